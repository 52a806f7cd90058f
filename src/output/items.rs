//! The `items` table (SPEC §5): one row per counted or excluded item,
//! sorted by integer ranks of the names instead of the strings.

use polars::prelude::*;

use crate::engine::{DayResult, Item};
use crate::model::Messages;
use crate::rules::Metric;

/// Each name's place among the sorted distinct names (equal names, equal
/// places), so that comparing places compares the names.
fn name_ranks(names: &[String]) -> Vec<u32> {
    use rayon::prelude::*;
    // The first 8 bytes, big-endian and zero-padded, order the names as far
    // as they go: only equal prefixes need the strings.
    let prefix = |s: &str| {
        let b = s.as_bytes();
        let mut x = [0u8; 8];
        let n = b.len().min(8);
        x[..n].copy_from_slice(&b[..n]);
        u64::from_be_bytes(x)
    };
    let mut order: Vec<(u64, u32)> = names
        .iter()
        .enumerate()
        .map(|(i, s)| (prefix(s), i as u32))
        .collect();
    let name = |i: u32| names[i as usize].as_str();
    order.par_sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| name(a.1).cmp(name(b.1))));
    let mut rank = vec![0u32; names.len()];
    let mut r = 0u32;
    for k in 0..order.len() {
        if k > 0 && name(order[k].1) != name(order[k - 1].1) {
            r += 1;
        }
        rank[order[k].1 as usize] = r;
    }
    rank
}

/// The places of a bucket's shop, agent and buyer names among their sorted
/// names (equal names, equal places): the `items` table is sorted by these
/// integers instead of the strings. Computed once per bucket for every
/// platform.
pub struct NameRanks {
    shop: Vec<u32>,
    agent: Vec<u32>,
    buyer: Vec<u32>,
}

impl NameRanks {
    pub fn of(m: &Messages) -> NameRanks {
        NameRanks {
            shop: name_ranks(&m.shop_names),
            agent: name_ranks(&m.agent_names),
            buyer: name_ranks(&m.buyer_names),
        }
    }
}

/// The names as `&str`s.
fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `items`: one row per counted or excluded item, sorted by shop_id,
/// agent_id, metric, then buyer_id and start (then the engine's order, for
/// equal keys). `ranks` are `m`'s ([`NameRanks::of`]).
pub fn items(
    m: &Messages,
    ranks: &NameRanks,
    metrics: &[&Metric],
    r: &DayResult,
) -> PolarsResult<DataFrame> {
    use rayon::prelude::*;
    let metric_rank = name_ranks(&metrics.iter().map(|k| k.id.clone()).collect::<Vec<_>>());
    // (shop, agent), (metric, buyer), start, then the item's index: unique,
    // so an unstable sort gives the stable order of the string keys.
    let mut keyed: Vec<(u64, u64, i64, usize)> = r
        .items
        .par_iter()
        .enumerate()
        .map(|(i, it)| {
            (
                (u64::from(ranks.shop[it.shop as usize]) << 32)
                    | u64::from(ranks.agent[it.agent as usize]),
                (u64::from(metric_rank[it.metric as usize]) << 32)
                    | u64::from(ranks.buyer[it.buyer as usize]),
                it.start,
                i,
            )
        })
        .collect();
    keyed.par_sort_unstable();
    // The items in table order, read once at random; every column below
    // is then one pass in order.
    let sorted: Vec<&Item> = keyed.par_iter().map(|k| &r.items[k.3]).collect();
    drop(keyed);
    fn column<T: Send>(sorted: &[&Item], f: impl Fn(&Item) -> T + Sync) -> Vec<T> {
        sorted.par_iter().map(|it| f(it)).collect()
    }
    let ts = |name: &str, v: Vec<Option<i64>>| -> PolarsResult<Column> {
        Column::new(name.into(), v).cast(&DataType::Datetime(
            TimeUnit::Milliseconds,
            Some(TimeZone::UTC),
        ))
    };
    // A name column: the distinct names once, then gathered by index (a
    // view copied per row rather than a string pushed).
    let names = |name: &str, distinct: &[&str], idx: Vec<IdxSize>| -> PolarsResult<Column> {
        let values = StringChunked::from_iter_values("".into(), distinct.iter().copied());
        let taken = values.take(&IdxCa::from_vec("".into(), idx))?;
        Ok(Column::from(taken.into_series().with_name(name.into())))
    };
    let metric_ids: Vec<&str> = metrics.iter().map(|k| k.id.as_str()).collect();
    DataFrame::new_infer_height(vec![
        names(
            "shop_id",
            &as_strs(&m.shop_names),
            column(&sorted, |it: &Item| it.shop as IdxSize),
        )?,
        names(
            "buyer_id",
            &as_strs(&m.buyer_names),
            column(&sorted, |it: &Item| it.buyer as IdxSize),
        )?,
        names(
            "agent_id",
            &as_strs(&m.agent_names),
            column(&sorted, |it: &Item| it.agent as IdxSize),
        )?,
        names(
            "metric",
            &metric_ids,
            column(&sorted, |it: &Item| it.metric as IdxSize),
        )?,
        ts("start", column(&sorted, |it: &Item| Some(it.start)))?,
        ts("reply", column(&sorted, |it: &Item| it.reply))?,
        Column::new(
            "latency_ms".into(),
            column(&sorted, |it: &Item| it.latency_ms),
        ),
        Column::new(
            "counted_ms".into(),
            column(&sorted, |it: &Item| it.counted_ms),
        ),
        Column::new(
            "passed".into(),
            sorted.iter().map(|it| it.passed).collect::<Vec<_>>(),
        ),
        Column::new(
            "excluded".into(),
            sorted
                .iter()
                .map(|it| it.excluded.map(|e| e.as_str()))
                .collect::<Vec<_>>(),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::name_ranks;

    /// A name's rank is the number of distinct names below it (the naive
    /// definition), whatever their first 8 bytes share.
    #[test]
    fn name_ranks_order_names_as_strings_do() {
        let names: Vec<String> = [
            "b",
            "a",
            "a\0",
            "ab",
            "abcdefgh1",
            "abcdefgh0",
            "abcdefgh",
            "a",
            "",
            "abcdefgh1",
            "客服",
            "abcdefg\u{ff}",
            "z",
            "",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let ranks = name_ranks(&names);
        for (i, a) in names.iter().enumerate() {
            let mut below: Vec<&String> = names.iter().filter(|b| *b < a).collect();
            below.sort();
            below.dedup();
            assert_eq!(ranks[i] as usize, below.len(), "rank of {a:?}");
        }
        assert!(name_ranks(&[]).is_empty());
    }
}
