//! The canonical text of a [`Metric`] and of [`InputSettings`]: what hashes of
//! rules (the manifests' `rules_hash`) are taken of.
//!
//! `{:?}` would do the same job until a dependency changes its `Debug`
//! output; this form is written here, documented, and pinned by a test, so it
//! changes only when this file does.
//!
//! # Format
//!
//! One `key=value` line per field, each ending in `\n`, in the fixed order
//! below; every field is present, and an absent optional value is `key=`
//! with nothing after it. The keys are the struct's field names.
//!
//! Values:
//! - integers (durations in milliseconds, counts) in decimal, `-` for negative;
//! - booleans `true` / `false`;
//! - names of units, kinds and policies as a rule file writes them
//!   (`buyer`, `mean_latency`, `exclude`, …);
//! - `hours` as `<start_ms>-<end_ms>`, milliseconds after local midnight;
//! - `responders` as the classes comma-joined in the order `manual,assist`;
//! - `unreplied` as `fail`, `exclude` or the stand-in latency in ms;
//! - dates `YYYY-MM-DD`;
//! - `target`, `max_bad_row_share`: the shortest decimal that reads back to
//!   the same `f64`, without exponent (`0.5`, `1`, `0.001`);
//! - `timezone`: the IANA name;
//! - maps as `key=value` entries sorted by key, comma-joined;
//! - free text (`id`, `alert`, map keys and values) escaped: `\` → `\\`,
//!   newline → `\n`, carriage return → `\r`, `=` → `\=`, `,` → `\,`, and
//!   the empty text is `\e` (so that an empty `alert` differs from none). So
//!   a value can hold neither a line break nor an unescaped separator, and no
//!   value can forge another line or entry.
//!
//! `Metric` (22 lines):
//! `id unit kind threshold_ms any_miss hours responders cross_day bot_only
//! cap_ms unreplied window_days session_gap_ms min_denominator target alert
//! effective_from effective_to alert_when score scores resolved_only`
//! (`alert_when` `below` or `above`; `score` the scorecard kind's name or
//! nothing; `scores` comma-joined in the order written).
//!
//! `InputSettings` (11 lines): `timezone max_bad_row_share columns
//! sender_values ts_epoch_unit` (`s`, `ms`, `us` or `ns`), then
//! `orders_columns refunds_columns refunds_status_values
//! complaints_columns ratings_columns ratings_score_values` (maps).

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::NaiveDate;

use super::{AlertWhen, EpochUnit, InputSettings, Metric, Unreplied};

impl Metric {
    /// The canonical text of this version (format in the module docs of
    /// `rules::canonical`): what the rules hash is taken of.
    pub fn canonical(&self) -> String {
        // Every field named, so that a new one must be given a line here.
        let Metric {
            id,
            unit,
            kind,
            threshold_ms,
            any_miss,
            hours,
            responders,
            cross_day,
            bot_only,
            cap_ms,
            unreplied,
            window_days,
            session_gap_ms,
            min_denominator,
            target,
            alert,
            effective_from,
            effective_to,
            alert_when,
            score,
            scores,
            resolved_only,
        } = self;
        let mut classes = Vec::new();
        if responders.manual() {
            classes.push("manual");
        }
        if responders.assist() {
            classes.push("assist");
        }
        let unreplied = match unreplied {
            Unreplied::Fail => "fail".to_string(),
            Unreplied::Exclude => "exclude".to_string(),
            Unreplied::Millis(ms) => ms.to_string(),
        };
        let mut out = String::new();
        line(&mut out, "id", &escape(id));
        line(&mut out, "unit", unit.name());
        line(&mut out, "kind", kind.name());
        line(&mut out, "threshold_ms", &opt(threshold_ms));
        line(&mut out, "any_miss", &any_miss.to_string());
        line(
            &mut out,
            "hours",
            &format!("{}-{}", hours.start_ms, hours.end_ms),
        );
        line(&mut out, "responders", &classes.join(","));
        line(&mut out, "cross_day", cross_day.name());
        line(&mut out, "bot_only", bot_only.name());
        line(&mut out, "cap_ms", &opt(cap_ms));
        line(&mut out, "unreplied", &unreplied);
        line(&mut out, "window_days", &window_days.to_string());
        line(&mut out, "session_gap_ms", &opt(session_gap_ms));
        line(&mut out, "min_denominator", &min_denominator.to_string());
        line(&mut out, "target", &opt(target));
        line(
            &mut out,
            "alert",
            &alert.as_deref().map(escape).unwrap_or_default(),
        );
        line(&mut out, "effective_from", &date(effective_from));
        line(&mut out, "effective_to", &date(effective_to));
        let when = match alert_when {
            AlertWhen::Below => "below",
            AlertWhen::Above => "above",
        };
        line(&mut out, "alert_when", when);
        line(&mut out, "score", score.map_or("", |k| k.name()));
        let scores: Vec<String> = scores.iter().map(u8::to_string).collect();
        line(&mut out, "scores", &scores.join(","));
        line(&mut out, "resolved_only", &resolved_only.to_string());
        out
    }
}

impl InputSettings {
    /// The canonical text of these settings (format in the module docs of
    /// `rules::canonical`): what the rules hash is taken of.
    pub fn canonical(&self) -> String {
        let InputSettings {
            timezone,
            max_bad_row_share,
            columns,
            sender_values,
            ts_epoch_unit,
            orders,
            refunds,
            complaints,
            ratings,
        } = self;
        let unit = ts_epoch_unit.map(|u| match u {
            EpochUnit::Seconds => "s",
            EpochUnit::Millis => "ms",
            EpochUnit::Micros => "us",
            EpochUnit::Nanos => "ns",
        });
        let mut out = String::new();
        line(&mut out, "timezone", &escape(timezone.name()));
        line(
            &mut out,
            "max_bad_row_share",
            &max_bad_row_share.to_string(),
        );
        line(&mut out, "columns", &map(columns));
        line(&mut out, "sender_values", &map(sender_values));
        line(&mut out, "ts_epoch_unit", unit.unwrap_or(""));
        line(&mut out, "orders_columns", &map(&orders.columns));
        line(&mut out, "refunds_columns", &map(&refunds.columns));
        line(
            &mut out,
            "refunds_status_values",
            &map(&refunds.status_values),
        );
        line(&mut out, "complaints_columns", &map(&complaints.columns));
        line(&mut out, "ratings_columns", &map(&ratings.columns));
        let score_values: BTreeMap<String, String> = ratings
            .score_values
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        line(&mut out, "ratings_score_values", &map(&score_values));
        out
    }
}

fn line(out: &mut String, key: &str, value: &str) {
    let _ = writeln!(out, "{key}={value}");
}

/// An optional number: its `Display` (decimal integers; for `f64` the
/// shortest round-trip decimal), or nothing.
fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(T::to_string).unwrap_or_default()
}

fn date(d: &Option<NaiveDate>) -> String {
    d.map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// `k=v` entries, sorted by key (a `BTreeMap`'s order), comma-joined.
fn map(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Free text with `\`, newline, carriage return, `=` and `,` escaped; the
/// empty text is `\e`.
fn escape(s: &str) -> String {
    if s.is_empty() {
        return "\\e".to_string();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '=' => out.push_str("\\="),
            ',' => out.push_str("\\,"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{EpochUnit, Kind, Policy, Responders, RuleSet, ScoreKind, Unit};
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn pdd_3m() -> Metric {
        RuleSet::preset("pdd")
            .unwrap()
            .metrics
            .into_iter()
            .find(|m| m.id == "pdd.manual_reply_rate_3m")
            .unwrap()
    }

    /// Written by hand from SPEC §4 (and the §3 example, which gives its
    /// target and alert text): a change of format must show up here.
    #[test]
    fn pinned_text_of_a_preset() {
        assert_eq!(
            pdd_3m().canonical(),
            "id=pdd.manual_reply_rate_3m\n\
             unit=buyer\n\
             kind=rate\n\
             threshold_ms=180000\n\
             any_miss=true\n\
             hours=28800000-82800000\n\
             responders=manual\n\
             cross_day=keep\n\
             bot_only=keep\n\
             cap_ms=\n\
             unreplied=fail\n\
             window_days=1\n\
             session_gap_ms=\n\
             min_denominator=1\n\
             target=0.5\n\
             alert=below 50%: warning on the merchant back-end\n\
             effective_from=2023-04-27\n\
             effective_to=\n\
             alert_when=below\n\
             score=\n\
             scores=\n\
             resolved_only=false\n"
        );
        assert_eq!(
            RuleSet::preset("pdd").unwrap().input.canonical(),
            "timezone=Asia/Shanghai\n\
             max_bad_row_share=0.001\n\
             columns=\n\
             sender_values=\n\
             ts_epoch_unit=\n\
             orders_columns=\n\
             refunds_columns=\n\
             refunds_status_values=\n\
             complaints_columns=\n\
             ratings_columns=\n\
             ratings_score_values=\n"
        );
    }

    #[test]
    fn equal_metrics_equal_text() {
        assert_eq!(pdd_3m().canonical(), pdd_3m().clone().canonical());
        let a = RuleSet::preset("taobao").unwrap();
        let b = RuleSet::preset("taobao").unwrap();
        for (x, y) in a.metrics.iter().zip(&b.metrics) {
            assert_eq!(x.canonical(), y.canonical());
        }
        assert_eq!(a.input.canonical(), b.input.canonical());
    }

    #[test]
    fn every_metric_field_changes_the_text() {
        let edits: &[fn(&mut Metric)] = &[
            |m| m.id.push('x'),
            |m| m.unit = Unit::Session,
            |m| m.kind = Kind::MeanLatency,
            |m| m.threshold_ms = None,
            |m| m.threshold_ms = Some(180_001),
            |m| m.any_miss = false,
            |m| m.hours.start_ms += 1,
            |m| m.hours.end_ms += 1,
            |m| m.responders = Responders::ASSIST,
            |m| m.cross_day = Policy::Exclude,
            |m| m.bot_only = Policy::Exclude,
            |m| m.cap_ms = Some(600_000),
            |m| m.unreplied = Unreplied::Exclude,
            |m| m.unreplied = Unreplied::Millis(0),
            |m| m.window_days = 30,
            |m| m.session_gap_ms = Some(600_000),
            |m| m.min_denominator = 100,
            |m| m.target = None,
            |m| m.target = Some(0.5000000000000001),
            |m| m.alert = None,
            |m| m.alert = Some(String::new()),
            |m| m.alert = Some("\\e".into()),
            |m| m.effective_from = None,
            |m| m.effective_from = Some(day("2023-04-28")),
            |m| m.effective_to = Some(day("2030-01-01")),
            |m| m.alert_when = AlertWhen::Above,
            |m| m.score = Some(ScoreKind::RatingShare),
            |m| m.scores = vec![4, 5],
            |m| m.scores = vec![5, 4],
            |m| m.resolved_only = true,
        ];
        let base = pdd_3m();
        let mut seen = vec![base.canonical()];
        for (i, edit) in edits.iter().enumerate() {
            let mut m = base.clone();
            edit(&mut m);
            let text = m.canonical();
            assert!(!seen.contains(&text), "edit {i} gives a text seen before");
            assert_eq!(text.lines().count(), 22, "edit {i}");
            seen.push(text);
        }
        // Both responder classes, in the fixed order.
        let mut m = base.clone();
        m.responders = Responders::ASSIST.with(Responders::MANUAL);
        assert!(m.canonical().contains("\nresponders=manual,assist\n"));
    }

    #[test]
    fn every_input_field_changes_the_text() {
        let edits: &[fn(&mut InputSettings)] = &[
            |s| s.timezone = chrono_tz::UTC,
            |s| s.max_bad_row_share = 0.01,
            |s| {
                s.columns.insert("shop_id".into(), "mall_id".into());
            },
            |s| {
                s.sender_values.insert("0".into(), "buyer".into());
            },
            |s| s.ts_epoch_unit = Some(EpochUnit::Seconds),
            |s| s.ts_epoch_unit = Some(EpochUnit::Millis),
            |s| {
                s.orders.columns.insert("amount".into(), "pay".into());
            },
            |s| {
                s.refunds.columns.insert("amount".into(), "pay".into());
            },
            |s| {
                s.refunds
                    .status_values
                    .insert("done".into(), "success".into());
            },
            |s| {
                s.complaints.columns.insert("ts".into(), "t".into());
            },
            |s| {
                s.ratings.columns.insert("ts".into(), "t".into());
            },
            |s| {
                s.ratings.score_values.insert("ok".into(), 5);
            },
        ];
        let base = InputSettings::default();
        let mut seen = vec![base.canonical()];
        for (i, edit) in edits.iter().enumerate() {
            let mut s = base.clone();
            edit(&mut s);
            let text = s.canonical();
            assert!(!seen.contains(&text), "edit {i} gives a text seen before");
            assert_eq!(text.lines().count(), 11, "edit {i}");
            seen.push(text);
        }
        let mut s = base.clone();
        s.columns.insert("ts".into(), "time".into());
        s.columns.insert("buyer_id".into(), "uid".into());
        assert!(s.canonical().contains("\ncolumns=buyer_id=uid,ts=time\n"));
    }

    #[test]
    fn text_cannot_forge_a_line_or_an_entry() {
        let mut m = pdd_3m();
        m.alert = Some("a\nid=forged,=\\\r".into());
        let text = m.canonical();
        assert_eq!(text.lines().count(), 22);
        assert!(text.contains("\nalert=a\\nid\\=forged\\,\\=\\\\\\r\n"));
        // Moving a separator between key and value changes the text.
        let mut a = InputSettings::default();
        a.sender_values.insert("a=b".into(), "c".into());
        let mut b = InputSettings::default();
        b.sender_values.insert("a".into(), "b=c".into());
        assert_ne!(a.canonical(), b.canonical());
    }
}
