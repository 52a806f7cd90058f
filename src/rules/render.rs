//! Showing rules to people: the `kefu rules` table and `kefu rules diff`.
//!
//! Both are built from [`fields`], so a column of the table is exactly what
//! `diff` compares.

use chrono::NaiveDate;

use super::{AlertWhen, Metric, RuleSet, Unreplied};

/// The displayed fields of a metric version, as (column, value): the rule
/// table's columns and what `diff` compares.
pub fn fields(m: &Metric) -> Vec<(&'static str, String)> {
    let secs = |ms: Option<i64>| {
        ms.map(|v| (v / 1000).to_string())
            .unwrap_or_else(|| "-".into())
    };
    let date = |d: Option<NaiveDate>| d.map(|d| d.to_string()).unwrap_or_else(|| "-".into());
    let score = m.score.is_some();
    // A scorecard metric has no message fields: shown as `-`.
    let msg = |v: String| if score { "-".to_string() } else { v };
    let side = match m.alert_when {
        AlertWhen::Below => "<",
        AlertWhen::Above => ">",
    };
    vec![
        ("id", m.id.clone()),
        ("unit", msg(m.unit.name().to_string())),
        ("kind", m.kind_name().to_string()),
        ("thr", msg(secs(m.threshold_ms))),
        (
            "any_miss",
            msg(if m.any_miss {
                "yes".into()
            } else {
                "no".into()
            }),
        ),
        ("hours", m.hours.to_string()),
        ("responders", msg(m.responders.to_string())),
        ("cross_day", msg(m.cross_day.name().to_string())),
        ("bot_only", msg(m.bot_only.name().to_string())),
        ("cap", msg(secs(m.cap_ms))),
        (
            "unreplied",
            msg(match m.unreplied {
                Unreplied::Fail => "fail".into(),
                Unreplied::Exclude => "exclude".into(),
                Unreplied::Millis(ms) => format!("{}s", ms / 1000),
            }),
        ),
        ("window", m.window_days.to_string()),
        ("gap", msg(secs(m.session_gap_ms))),
        (
            "scores",
            match (m.scores.is_empty(), m.resolved_only) {
                (true, _) => "-".into(),
                (false, resolved) => {
                    let s: Vec<String> = m.scores.iter().map(u8::to_string).collect();
                    let s = s.join(",");
                    if resolved {
                        format!("{s} resolved")
                    } else {
                        s
                    }
                }
            },
        ),
        (
            "alert",
            match m.target {
                Some(t) if m.min_denominator > 1 => {
                    format!("{side}{t} (den>={})", m.min_denominator)
                }
                Some(t) => format!("{side}{t}"),
                None => "-".into(),
            },
        ),
        ("from", date(m.effective_from)),
        ("to", date(m.effective_to)),
    ]
}

/// The input settings as `kefu rules` prints them (and `diff` compares them).
fn input_lines(set: &RuleSet) -> Vec<String> {
    let mut out = vec![
        format!("timezone {}", set.input.timezone),
        format!("max_bad_row_share {}", set.input.max_bad_row_share),
    ];
    for (k, v) in &set.input.columns {
        out.push(format!("column {k} = {v}"));
    }
    for (k, v) in &set.input.sender_values {
        out.push(format!("sender value {k:?} = {v}"));
    }
    let i = &set.input;
    for (table, t) in [
        ("orders", &i.orders),
        ("refunds", &i.refunds),
        ("complaints", &i.complaints),
        ("ratings", &i.ratings),
    ] {
        for (k, v) in &t.columns {
            out.push(format!("{table} column {k} = {v}"));
        }
        for (k, v) in &t.status_values {
            out.push(format!("{table} status value {k:?} = {v}"));
        }
        for (k, v) in &t.score_values {
            out.push(format!("{table} score value {k:?} = {v}"));
        }
    }
    out
}

/// A table of the resolved rules, one metric version a line (`kefu rules`).
pub fn render_table(set: &RuleSet) -> String {
    let Some(first) = set.metrics.first() else {
        return format!("# {}\n# (no metrics)\n", set.source);
    };
    let mut rows: Vec<Vec<String>> =
        vec![fields(first).iter().map(|(k, _)| k.to_string()).collect()];
    rows.extend(
        set.metrics
            .iter()
            .map(|m| fields(m).into_iter().map(|(_, v)| v).collect()),
    );
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!("# {}\n", set.source);
    for l in input_lines(set) {
        out.push_str(&format!("# {l}\n"));
    }
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}", w = *w))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// What changed from rule set `a` to rule set `b`, one line per change:
/// input settings, metric versions added or removed, and changed fields of
/// versions present in both (paired by id and `effective_from`). Empty when
/// the two compute the same numbers.
pub fn diff(a: &RuleSet, b: &RuleSet) -> Vec<String> {
    let mut out = Vec::new();
    let (ia, ib) = (input_lines(a), input_lines(b));
    for l in ia.iter().filter(|l| !ib.contains(l)) {
        out.push(format!("- input: {l}"));
    }
    for l in ib.iter().filter(|l| !ia.contains(l)) {
        out.push(format!("+ input: {l}"));
    }
    let key = |m: &Metric| (m.id.clone(), m.effective_from);
    for m in &a.metrics {
        match b.metrics.iter().find(|x| key(x) == key(m)) {
            None => out.push(format!("- metric {}: removed", m.rule_version())),
            Some(n) => {
                for ((k, va), (_, vb)) in fields(m).into_iter().zip(fields(n)) {
                    if va != vb {
                        out.push(format!("~ metric {}: {k} {va} -> {vb}", m.rule_version()));
                    }
                }
                if m.alert != n.alert {
                    out.push(format!(
                        "~ metric {}: alert text {:?} -> {:?}",
                        m.rule_version(),
                        m.alert.as_deref().unwrap_or(""),
                        n.alert.as_deref().unwrap_or("")
                    ));
                }
            }
        }
    }
    for m in &b.metrics {
        if !a.metrics.iter().any(|x| key(x) == key(m)) {
            let desc: Vec<String> = fields(m)
                .into_iter()
                .skip(1)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            out.push(format!(
                "+ metric {}: added ({})",
                m.rule_version(),
                desc.join(", ")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{parse, TEST_METRIC as BASE};
    use super::*;

    #[test]
    fn diff_lists_changes() {
        let a = parse(&format!("{BASE}effective_to = 2024-05-01\n"), "a.toml").unwrap();
        let b = parse(
            &format!(
                "timezone = \"UTC\"\n{}effective_to = 2024-05-01\n{}effective_from = 2024-05-02\n",
                BASE.replace("threshold = 30", "threshold = 60"),
                BASE
            ),
            "b.toml",
        )
        .unwrap();
        assert_eq!(
            diff(&a, &b),
            vec![
                "- input: timezone Asia/Shanghai".to_string(),
                "+ input: timezone UTC".to_string(),
                "~ metric m@: thr 30 -> 60".to_string(),
                "+ metric m@2024-05-02: added (unit=message, kind=rate, thr=30, any_miss=no, hours=08:00-23:00, \
                 responders=manual, cross_day=keep, bot_only=keep, cap=-, unreplied=fail, window=1, gap=-, \
                 scores=-, alert=-, from=2024-05-02, to=-)"
                    .to_string(),
            ]
        );
        assert!(diff(&a, &a).is_empty());
        let pdd = RuleSet::preset("pdd").unwrap();
        assert!(diff(&pdd, &pdd).is_empty());
        // The scorecard fields.
        let s = "[[metric]]\nid = \"r\"\nkind = \"rating_share\"\nhours = \"00:00-24:00\"\nscores = [4, 5]\n";
        let a = parse(s, "a.toml").unwrap();
        let b = parse(
            &format!("{s}resolved_only = true\ntarget = 0.9\nalert_when = \"above\"\n"),
            "b.toml",
        )
        .unwrap();
        assert_eq!(
            diff(&a, &b),
            vec![
                "~ metric r@: scores 4,5 -> 4,5 resolved".to_string(),
                "~ metric r@: alert - -> >0.9".to_string(),
            ]
        );
        assert!(render_table(&a).contains("rating_share"));
    }
}
