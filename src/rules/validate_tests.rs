//! The table tests of `validate`: one small rule file per field rule.

use super::super::{assert_errors, parse, TEST_METRIC as BASE};
use super::*;

#[test]
fn defaults() {
    let m = &parse(BASE, "r.toml").unwrap().metrics[0];
    assert_eq!(m.unreplied, Unreplied::Fail);
    assert_eq!(
        (m.cross_day, m.bot_only, m.any_miss, m.window_days),
        (Policy::Keep, Policy::Keep, false, 1)
    );
    assert_eq!(m.rule_version(), "m@");
    let mean = parse(
        &BASE.replace(
            "kind = \"rate\"\nthreshold = 30\n",
            "kind = \"mean_latency\"\n",
        ),
        "r.toml",
    )
    .unwrap();
    assert_eq!(mean.metrics[0].unreplied, Unreplied::Exclude);
    let set = parse("", "r.toml").unwrap();
    assert_eq!(set.input.timezone, chrono_tz::Asia::Shanghai);
    assert_eq!(set.input.max_bad_row_share, 0.001);
}

#[test]
fn errors_name_line_and_key() {
    assert_errors(&[
        (
            &BASE.replace("threshold = 30", "threshold = 0"),
            5,
            "`threshold` must be a positive",
        ),
        (
            &BASE.replace("threshold = 30", "threshold = -5"),
            5,
            "`threshold` must be a positive",
        ),
        (
            &BASE.replace("threshold = 30\n", ""),
            1,
            "`threshold` is required",
        ),
        (&BASE.replace("08:00-23:00", "23:00-08:00"), 6, "`hours`"),
        (
            &BASE.replace("[\"manual\"]", "[\"robot\"]"),
            7,
            "not a responder class",
        ),
        (&BASE.replace("[\"manual\"]", "[]"), 7, "at least one class"),
        (
            &BASE.replace("[\"manual\"]", "[\"manual\", \"manual\"]"),
            7,
            "listed twice",
        ),
        (
            &format!("{BASE}cap = 600\n"),
            8,
            "`cap` does not apply to a rate",
        ),
        (
            &format!("{BASE}any_miss = true\n"),
            8,
            "`any_miss` does not apply",
        ),
        (
            &format!("{BASE}cross_day = \"exclude\"\n"),
            8,
            "`cross_day` does not apply",
        ),
        (
            &format!("{BASE}session_gap = 600\n"),
            8,
            "`session_gap` does not apply",
        ),
        (&format!("{BASE}unreplied = 600\n"), 8, "a rate takes"),
        (
            &BASE.replace("message", "session"),
            1,
            "`session_gap` is required",
        ),
        (&BASE.replace("message", "thread"), 3, "`unit`: `thread`"),
        (
            &format!("{BASE}effective_from = 2024-05-02\neffective_to = 2024-05-01\n"),
            9,
            "before `effective_from`",
        ),
        (
            &format!("{BASE}effective_from = \"yesterday\"\n"),
            8,
            "`effective_from`",
        ),
        (&format!("{BASE}window_days = 0\n"), 8, "`window_days`"),
        (&format!("{BASE}{BASE}"), 8, "overlaps"),
        (
            &format!("{BASE}effective_to = 2024-05-01\n{BASE}effective_from = 2024-05-03\n"),
            9,
            "without gaps",
        ),
    ]);
}

/// A small valid scorecard metric (line 1 `[[metric]]`, 3 `kind`, 4
/// `hours`).
const SCORE: &str =
    "[[metric]]\nid = \"s\"\nkind = \"rating_share\"\nhours = \"00:00-24:00\"\nscores = [4, 5]\n";

#[test]
fn scorecard_kinds() {
    let m = &parse(SCORE, "r.toml").unwrap().metrics[0];
    assert_eq!(m.score, Some(ScoreKind::RatingShare));
    assert_eq!((m.scores.clone(), m.resolved_only), (vec![4, 5], false));
    assert_eq!(m.alert_when, AlertWhen::Below);
    let conv = SCORE
        .replace("rating_share", "conversion")
        .replace("scores = [4, 5]\n", "");
    for k in ScoreKind::ALL {
        let text = conv.replace("conversion", k.name());
        let text = match k {
            ScoreKind::RatingShare => format!("{text}scores = [1]\nresolved_only = true\n"),
            _ => text,
        };
        let m = &parse(&text, "r.toml").unwrap().metrics[0];
        assert_eq!(m.score, Some(k));
        assert_eq!(m.kind_name(), k.name());
    }
    let above = parse(&format!("{conv}alert_when = \"above\"\n"), "r.toml").unwrap();
    assert_eq!(above.metrics[0].alert_when, AlertWhen::Above);
    let old = parse(&format!("{BASE}alert_when = \"above\"\n"), "r.toml").unwrap();
    assert_eq!(old.metrics[0].alert_when, AlertWhen::Above);
    // Not among the message metrics in force.
    let d = NaiveDate::from_ymd_opt(2024, 5, 16).unwrap();
    let set = parse(&format!("{BASE}{conv}").replace("\"s\"", "\"t\""), "r.toml").unwrap();
    assert_eq!(set.in_force(d).len(), 1);
    assert_eq!(set.scores_in_force(d)[0].id, "t");
}

#[test]
fn scorecard_field_errors() {
    let conv = SCORE
        .replace("rating_share", "conversion")
        .replace("scores = [4, 5]\n", "");
    let mut cases: Vec<(String, usize, &str)> = Vec::new();
    for (key, value) in [
        ("unit", "\"buyer\""),
        ("threshold", "30"),
        ("any_miss", "true"),
        ("responders", "[\"manual\"]"),
        ("cross_day", "\"keep\""),
        ("bot_only", "\"keep\""),
        ("cap", "600"),
        ("unreplied", "\"fail\""),
        ("session_gap", "600"),
    ] {
        cases.push((
            format!("{conv}{key} = {value}\n"),
            5,
            "does not apply to a conversion",
        ));
    }
    cases.extend([
        (
            conv.replace("hours = \"00:00-24:00\"\n", ""),
            1,
            "`hours` is required",
        ),
        (
            SCORE.replace("scores = [4, 5]\n", ""),
            1,
            "`scores` is required",
        ),
        (SCORE.replace("[4, 5]", "[]"), 5, "at least one score"),
        (SCORE.replace("[4, 5]", "[4, 4]"), 5, "listed twice"),
        (SCORE.replace("[4, 5]", "[0, 5]"), 5, "not an integer 1-5"),
        (SCORE.replace("[4, 5]", "[6]"), 5, "not an integer 1-5"),
        (
            format!("{conv}scores = [5]\n"),
            5,
            "`scores` does not apply",
        ),
        (
            format!("{conv}resolved_only = true\n"),
            5,
            "`resolved_only` does not apply",
        ),
        (
            format!("{BASE}scores = [5]\n"),
            8,
            "`scores` does not apply to a rate",
        ),
        (
            format!("{BASE}resolved_only = true\n"),
            8,
            "`resolved_only` does not apply",
        ),
        (
            format!("{SCORE}alert_when = \"over\"\n"),
            6,
            "not one of below, above",
        ),
        (
            format!("{BASE}alert_when = \"over\"\n"),
            8,
            "not one of below, above",
        ),
        (format!("{conv}window_days = 0\n"), 5, "`window_days`"),
        (
            BASE.replace("\"rate\"", "\"sales\""),
            4,
            "conversion, order_value",
        ),
        (format!("{SCORE}{SCORE}"), 6, "overlaps"),
    ]);
    let cases: Vec<(&str, usize, &str)> =
        cases.iter().map(|(t, l, f)| (t.as_str(), *l, *f)).collect();
    assert_errors(&cases);
}

#[test]
fn gap_message_in_full() {
    let text = format!("{BASE}effective_to = 2024-05-01\n{BASE}effective_from = 2024-05-03\n");
    let e = parse(&text, "r.toml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "rule file r.toml, line 9: metric `m`: this version (2024-05-03 – ) does not start \
         the day after the one at line 1 ( – 2024-05-01) ends; versions of one id must \
         follow each other without gaps"
    );
}

#[test]
fn versions_may_follow_each_other() {
    let a = format!("{BASE}effective_to = 2024-05-01\n");
    let b = format!("{BASE}effective_from = 2024-05-02\n");
    let set = parse(&format!("{a}{b}"), "r.toml").unwrap();
    let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    assert_eq!(
        set.in_force(d("2024-05-01"))[0].effective_to,
        Some(d("2024-05-01"))
    );
    assert_eq!(
        set.in_force(d("2024-05-02"))[0].rule_version(),
        "m@2024-05-02"
    );
    assert_eq!(set.in_force(d("2024-05-02")).len(), 1);
}
