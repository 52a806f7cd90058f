//! One metric version's statements (SPEC §3-§4): `kefu_i<k>`, its items per
//! unit (message, round, buyer, session) on the days it is in force, and
//! `kefu_d<k>`, their numerator and denominator per shop and day.

use crate::error::{Error, Result};
use crate::model::day_date;
use crate::rules::{Kind, Metric, Policy, Unit, Unreplied};
use crate::spark::expr::{lit, value};
use crate::spark::plan::session_gap;

/// The comment naming version `m` of rule-set index `k`, computing on days
/// `lo..=hi`, then its `kefu_i<k>` and `kefu_d<k>` views.
pub fn metric_views(k: usize, m: &Metric, (lo, hi): (i32, i32)) -> Result<String> {
    let items = items_query(m, lo, hi);
    let daily = daily_view(k, m)?;
    let unit = format!("{:?}", m.unit).to_lowercase();
    let kind = match m.kind {
        Kind::Rate => "rate",
        Kind::MeanLatency => "mean_latency",
    };
    Ok(format!(
        r#"-- {version} (unit {unit}, kind {kind}, hours {hours}, responders {responders}, days {first} .. {last})
CREATE OR REPLACE TEMPORARY VIEW kefu_i{k} AS
{items};

{daily}"#,
        version = m.rule_version(),
        hours = m.hours,
        responders = m.responders,
        first = day_date(lo),
        last = day_date(hi),
    ))
}

/// The failing predicate of an item (no reply within the threshold), for
/// `any_miss`.
fn failing(m: &Metric) -> String {
    let b = m.responders.bits();
    match m.threshold_ms {
        Some(t) => format!("(lat{b} IS NULL OR lat{b} > {t})"),
        None => "false".to_string(),
    }
}

/// The items of `m` on days `lo..=hi`, one row each with its latency `lat`,
/// reply day `rd`, `bot` (a bot row within the horizon), and for buyers and
/// sessions `fail_any` and `ffu` (the first failing inquiry is unreplied).
fn items_query(m: &Metric, lo: i32, hi: i32) -> String {
    let b = m.responders.bits();
    let hours = format!("tod >= {} AND tod < {}", m.hours.start_ms, m.hours.end_ms);
    let days = format!("day BETWEEN {lo} AND {hi}");
    // One row per inquiry (messages) or round opener (rounds).
    let each = |opener: &str| {
        format!(
            r#"SELECT shop_id, day, lat{b} AS lat, rd{b} AS rd, bot_seen AS bot, false AS fail_any, false AS ffu
FROM kefu_ev
WHERE {opener} AND {days} AND {hours}"#
        )
    };
    match m.unit {
        Unit::Message => each("inq"),
        Unit::Round => each(&format!("opens{b}")),
        Unit::Buyer => grouped(
            m,
            "shop_id, buyer_id, day",
            &format!("inq AND {days} AND {hours}"),
            "true",
        ),
        // A session counts when its first inquiry lies within the hours.
        Unit::Session => grouped(
            m,
            &format!("shop_id, buyer_id, day, session_id, s{}", session_gap(m)),
            &format!("inq AND {days}"),
            &format!(
                "st.tod >= {} AND st.tod < {}",
                m.hours.start_ms, m.hours.end_ms
            ),
        ),
    }
}

/// Items grouping the inquiries `filter` by `keys` (buyers, sessions): the
/// first inquiry's values, whether any fails, and whether the first failing
/// one is unreplied; the groups kept are those where `having` holds.
fn grouped(m: &Metric, keys: &str, filter: &str, having: &str) -> String {
    let b = m.responders.bits();
    let failing = failing(m);
    let ord = "'o1', ts_ms, 'o2', nb, 'o3', kefu_file, 'o4', kefu_row";
    format!(
        r#"SELECT
  shop_id, day, st.lat AS lat, st.rd AS rd, st.bot AS bot,
  coalesce(fail_any, false) AS fail_any, coalesce(ffu, false) AS ffu
FROM (
  SELECT
    shop_id, day,
    min(named_struct({ord}, 'tod', tod, 'lat', lat{b}, 'rd', rd{b}, 'bot', bot_seen)) AS st,
    bool_or({failing}) AS fail_any,
    min(CASE WHEN {failing}
      THEN named_struct({ord}, 'u', lat{b} IS NULL) END).u AS ffu
  FROM kefu_ev
  WHERE {filter}
  GROUP BY {keys})
WHERE {having}"#
    )
}

/// `kefu_d<k>`: per shop and day, the numerator and denominator of `m` over
/// its items (exclusions and unreplied items applied), and the value.
fn daily_view(k: usize, m: &Metric) -> Result<String> {
    let excl = exclusions(m);
    let (counted, num) = counted_and_numerator(m)?;
    let id = lit(&m.id);
    let rv = lit(&m.rule_version());
    let value = value(m.kind, "num", "den");
    Ok(format!(
        r#"CREATE OR REPLACE TEMPORARY VIEW kefu_d{k} AS
SELECT
  shop_id, day, {id} AS metric,
  CAST(SUM(num) AS BIGINT) AS numerator,
  CAST(SUM(den) AS BIGINT) AS denominator,
  {value} AS value,
  {rv} AS rule_version
FROM (
  SELECT
    shop_id, day,
    CASE WHEN NOT kefu_excl AND {counted} THEN {num} ELSE 0 END AS num,
    CASE WHEN NOT kefu_excl AND {counted} THEN 1 ELSE 0 END AS den
  FROM (
    SELECT *, {excl} AS kefu_excl
    FROM kefu_i{k}))
GROUP BY shop_id, day
HAVING SUM(den) > 0;

"#
    ))
}

/// The exclusion predicate of an item of `m` (rounds and sessions only):
/// a reply on another day, a bot-only item.
fn exclusions(m: &Metric) -> String {
    let mut excl = Vec::new();
    if matches!(m.unit, Unit::Round | Unit::Session) {
        if m.cross_day == Policy::Exclude {
            excl.push("(rd IS NOT NULL AND rd <> day)".to_string());
        }
        if m.bot_only == Policy::Exclude {
            excl.push("(lat IS NULL AND bot)".to_string());
        }
    }
    if excl.is_empty() {
        "false".to_string()
    } else {
        excl.join(" OR ")
    }
}

/// Which items of `m` count in the denominator, and the numerator of one.
fn counted_and_numerator(m: &Metric) -> Result<(String, String)> {
    let any_miss =
        m.any_miss && m.kind == Kind::Rate && matches!(m.unit, Unit::Buyer | Unit::Session);
    Ok(match m.kind {
        Kind::Rate => {
            let t = m.threshold_ms.ok_or_else(|| {
                Error::Usage(format!("metric {}: a rate needs a threshold", m.id))
            })?;
            let exclude_unreplied = m.unreplied == Unreplied::Exclude;
            if any_miss {
                (
                    if exclude_unreplied {
                        "NOT (fail_any AND ffu)".to_string()
                    } else {
                        "true".to_string()
                    },
                    "CASE WHEN fail_any THEN 0 ELSE 1 END".to_string(),
                )
            } else {
                (
                    if exclude_unreplied {
                        "lat IS NOT NULL".to_string()
                    } else {
                        "true".to_string()
                    },
                    format!("CASE WHEN lat IS NOT NULL AND lat <= {t} THEN 1 ELSE 0 END"),
                )
            }
        }
        Kind::MeanLatency => {
            let observed = match m.cap_ms {
                Some(c) => format!("least(lat, {c})"),
                None => "lat".to_string(),
            };
            match m.unreplied {
                Unreplied::Millis(ms) => (
                    "true".to_string(),
                    format!("CASE WHEN lat IS NULL THEN {ms} ELSE {observed} END"),
                ),
                _ => (
                    "lat IS NOT NULL".to_string(),
                    format!("coalesce({observed}, 0)"),
                ),
            }
        }
    })
}
