//! Small SQL text helpers shared by the statement builders: quoting, the
//! local day and time of a UTC instant, the valid-reply predicate, the value
//! of a metric, and the layout of column lists.

use crate::rules::{Kind, Responders};

/// A SQL string literal.
pub fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A SQL identifier.
pub fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// The local wall-clock milliseconds of a UTC-milliseconds expression; `tz`
/// is the zone as a SQL literal.
pub fn local_ms(utc_ms: &str, tz: &str) -> String {
    format!("unix_millis(from_utc_timestamp(timestamp_millis({utc_ms}), {tz}))")
}

/// The local day number (days since 1970-01-01) of a UTC-milliseconds expression.
pub fn local_day(utc_ms: &str, tz: &str) -> String {
    let l = local_ms(utc_ms, tz);
    format!("CAST(({l} - pmod({l}, 86400000)) div 86400000 AS INT)")
}

/// The `dt` partition value (`YYYY-MM-DD`) of a day-number expression.
pub fn day_string(day: &str) -> String {
    format!("CAST(date_add(DATE'1970-01-01', {day}) AS STRING)")
}

/// The row predicate of a valid reply of responder set `r`.
pub fn valid_reply(r: Responders) -> String {
    let mut parts = Vec::new();
    if r.manual() {
        parts.push("(sender = 'agent' AND NOT auto)");
    }
    if r.assist() {
        parts.push("(sender = 'bot' AND assist)");
    }
    if parts.is_empty() {
        "false".to_string()
    } else {
        format!("({})", parts.join(" OR "))
    }
}

/// The `value` of a metric of `kind` from the columns summed as numerator
/// and denominator: a share, or a mean latency in seconds.
pub fn value(kind: Kind, num: &str, den: &str) -> String {
    let ratio = format!("CAST(SUM({num}) AS DOUBLE) / CAST(SUM({den}) AS DOUBLE)");
    match kind {
        Kind::Rate => ratio,
        Kind::MeanLatency => format!("{ratio} / 1000.0"),
    }
}

/// `items` one per line, comma-separated, every line after the first
/// starting with `indent` (the first takes the template's indentation).
pub fn list<S: AsRef<str>>(items: &[S], indent: &str) -> String {
    let sep = format!(",\n{indent}");
    items
        .iter()
        .map(|s| s.as_ref())
        .collect::<Vec<_>>()
        .join(&sep)
}
