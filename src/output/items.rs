//! The `items` table (SPEC §5, with §8.2's scorecard columns): one row per
//! counted or excluded item, the message items sorted by integer ranks of
//! the names instead of the strings, merged with the scorecard's, and
//! encoded to Parquet pages one row group at a time straight from the
//! items (no frame is built).

use polars::io::parquet::write::get_encodings;
use polars::prelude::*;
use polars_arrow::array::{
    Array, BooleanArray, MutableBinaryViewArray, PrimitiveArray, Utf8ViewArray, View,
};
use polars_arrow::bitmap::{Bitmap, MutableBitmap};
use polars_arrow::datatypes::ArrowDataType;
use polars_parquet::write::to_parquet_schema;

use super::encode::{row_group, write_options, Encoded, Hint, ROW_GROUP_ROWS};
use crate::engine::Item;
use crate::model::Messages;
use crate::rules::Metric;
use crate::scorecard::ScoreItem;

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

/// A row of the `items` table: a message item (its place among the
/// message items in table order) or a scorecard item (an index into the bucket's
/// scorecard items).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Row {
    Message(u32),
    Score(u32),
}

/// A bucket's scorecard items (§8.2), each with its metric id, sorted as
/// the table is (shop_id, agent_id, metric, buyer_id, start).
pub type ScoreItems<'a> = [(&'a str, ScoreItem<'a>)];

/// What a bucket's `items` rows are made of.
pub struct ItemSources<'a> {
    pub messages: &'a Messages,
    /// `messages`' name ranks ([`NameRanks::of`]).
    pub ranks: &'a NameRanks,
    /// The metrics `items` were computed for, in their order.
    pub metrics: &'a [&'a Metric],
    /// The day result's message items, put in table order in place.
    pub items: &'a mut [Item],
    /// The scorecard's items; `Some` (even if empty) when the run was given
    /// a scorecard table, which adds the `order_id` and `counted` columns.
    pub score: Option<&'a ScoreItems<'a>>,
}

/// The `items` table's columns (the last two only with a scorecard table).
fn schema(score_columns: bool) -> Schema {
    let ts = DataType::Datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC));
    let mut fields = vec![
        Field::new("shop_id".into(), DataType::String),
        Field::new("buyer_id".into(), DataType::String),
        Field::new("agent_id".into(), DataType::String),
        Field::new("metric".into(), DataType::String),
        Field::new("start".into(), ts.clone()),
        Field::new("reply".into(), ts),
        Field::new("latency_ms".into(), DataType::Int64),
        Field::new("counted_ms".into(), DataType::Int64),
        Field::new("passed".into(), DataType::Boolean),
        Field::new("excluded".into(), DataType::String),
    ];
    if score_columns {
        fields.push(Field::new("order_id".into(), DataType::String));
        fields.push(Field::new("counted".into(), DataType::Int64));
    }
    Schema::from_iter(fields)
}

/// The metric ids' ranks (equal ids, equal ranks).
fn metric_ranks(metrics: &[&Metric]) -> Vec<u32> {
    name_ranks(&metrics.iter().map(|k| k.id.clone()).collect::<Vec<_>>())
}

/// The message items in table order: sorted by shop_id, agent_id, metric,
/// then buyer_id and start (then the engine's order, for equal keys).
fn message_order(s: &ItemSources) -> Vec<u32> {
    use rayon::prelude::*;
    let ranks = s.ranks;
    let metric_rank = metric_ranks(s.metrics);
    // (shop, agent), (metric, buyer), start, then the item's index: unique,
    // so an unstable sort gives the stable order of the string keys.
    let mut keyed: Vec<(u64, u64, i64, u32)> = s
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
                i as u32,
            )
        })
        .collect();
    keyed.par_sort_unstable();
    keyed.into_iter().map(|k| k.3).collect()
}

/// Every row in table order: the message items and the scorecard items
/// merged by (shop_id, agent_id, metric, buyer_id, start), a message item
/// first on equal keys (as a stable sort of the message items followed by
/// the scorecard's would place them).
fn table_order(s: &ItemSources, messages: &[u32]) -> Vec<Row> {
    let score = s.score.unwrap_or(&[]);
    if score.is_empty() {
        return (0..messages.len() as u32).map(Row::Message).collect();
    }
    let m = s.messages;
    let msg_key = |i: u32| {
        let it = &s.items[i as usize];
        (
            m.shop_names[it.shop as usize].as_str(),
            m.agent_names[it.agent as usize].as_str(),
            s.metrics[it.metric as usize].id.as_str(),
            m.buyer_names[it.buyer as usize].as_str(),
            it.start,
        )
    };
    let score_key = |j: usize| {
        let (metric, it) = &score[j];
        (it.shop_id, it.agent_id, *metric, it.buyer_id, it.start)
    };
    let mut out = Vec::with_capacity(messages.len() + score.len());
    let (mut i, mut j) = (0, 0);
    while i < messages.len() || j < score.len() {
        if j < score.len() && (i == messages.len() || score_key(j) < msg_key(messages[i])) {
            out.push(Row::Score(j as u32));
            j += 1;
        } else {
            out.push(Row::Message(i as u32));
            i += 1;
        }
    }
    out
}

/// `names` as one string array (each name once), whose views the name
/// columns copy.
fn name_array<'n>(names: impl Iterator<Item = &'n str>) -> Utf8ViewArray {
    let mut b = MutableBinaryViewArray::<str>::new();
    for n in names {
        b.push_value(n);
    }
    b.freeze()
}

/// A validity bitmap, kept only when some value is null (as polars keeps
/// it, so that the pages come out the same).
fn validity(valid: MutableBitmap) -> Option<Bitmap> {
    let bitmap: Bitmap = valid.into();
    (bitmap.unset_bits() > 0).then_some(bitmap)
}

/// A name column: a message row's name is a view of `dict` (the
/// bucket's distinct names), copied; a scorecard row's name is its own.
/// Its hint: the names' ranks (`rank`: equal names, equal ranks) when
/// every row is a message row.
fn name_column<'r>(
    rows: &[Row],
    dict: &Utf8ViewArray,
    rank: &[u32],
    message: impl Fn(u32) -> usize,
    score: impl Fn(u32) -> &'r str,
) -> (Box<dyn Array>, Hint) {
    let base = dict.data_buffers().len() as u32;
    let mut extra: Vec<u8> = Vec::new();
    let mut ids: Vec<u32> = Vec::with_capacity(rows.len());
    let mut only_messages = true;
    let views: Vec<View> = rows
        .iter()
        .map(|r| match *r {
            Row::Message(i) => {
                let k = message(i);
                ids.push(rank[k]);
                dict.views()[k]
            }
            Row::Score(j) => {
                only_messages = false;
                let b = score(j).as_bytes();
                let v = View::new_from_bytes(b, base, extra.len() as u32);
                if b.len() > View::MAX_INLINE_SIZE as usize {
                    extra.extend_from_slice(b);
                }
                v
            }
        })
        .collect();
    let mut buffers: Vec<_> = dict.data_buffers().iter().cloned().collect();
    if !extra.is_empty() {
        buffers.push(extra.into());
    }
    // SAFETY: the views are `dict`'s (its buffers come first, in order) or
    // point into `extra`, the buffer after them; the bytes are `&str`s.
    let array = unsafe {
        Utf8ViewArray::new_unchecked_unknown_md(
            ArrowDataType::Utf8View,
            views.into(),
            buffers.into(),
            None,
            None,
        )
    };
    let hint = match only_messages {
        true => Hint::Ids(ids),
        false => Hint::Repeats,
    };
    (Box::new(array), hint)
}

/// An optional text column.
fn text_column<'r>(rows: &[Row], f: impl Fn(Row) -> Option<&'r str>) -> Box<dyn Array> {
    let mut b = MutableBinaryViewArray::<str>::with_capacity(rows.len());
    for r in rows {
        b.push(f(*r));
    }
    let a = b.freeze();
    let v = a.validity().cloned().filter(|v| v.unset_bits() > 0);
    Box::new(a.with_validity(v))
}

/// An optional integer column of type `dtype` (nulls hold 0, as polars'
/// builders leave them).
fn int_column(
    rows: &[Row],
    dtype: &ArrowDataType,
    f: impl Fn(Row) -> Option<i64>,
) -> Box<dyn Array> {
    let mut values = Vec::with_capacity(rows.len());
    let mut valid = MutableBitmap::with_capacity(rows.len());
    for r in rows {
        let v = f(*r);
        values.push(v.unwrap_or(0));
        valid.push(v.is_some());
    }
    Box::new(PrimitiveArray::new(
        dtype.clone(),
        values.into(),
        validity(valid),
    ))
}

/// An optional boolean column (nulls hold false).
fn bool_column(rows: &[Row], f: impl Fn(Row) -> Option<bool>) -> Box<dyn Array> {
    let mut values = MutableBitmap::with_capacity(rows.len());
    let mut valid = MutableBitmap::with_capacity(rows.len());
    for r in rows {
        let v = f(*r);
        values.push(v.unwrap_or(false));
        valid.push(v.is_some());
    }
    Box::new(BooleanArray::new(
        ArrowDataType::Boolean,
        values.into(),
        validity(valid),
    ))
}

/// A bucket's `items` rows, sorted and encoded as row groups of
/// [`ROW_GROUP_ROWS`] rows straight from the items (no frame): the pages
/// [`encode`](super::encode::encode) makes of the same rows as a frame.
pub fn encode_items(s: ItemSources) -> PolarsResult<Encoded> {
    let order = message_order(&s);
    let rows = table_order(&s, &order);
    // The message items in table order: each column below then reads them
    // in order (not at random, once per column).
    crate::model::permute(s.items, order);
    let schema = schema(s.score.is_some());
    let arrow = schema.to_arrow(CompatLevel::newest());
    let dtypes: Vec<ArrowDataType> = arrow.iter_values().map(|f| f.dtype().clone()).collect();
    let parquet = to_parquet_schema(&arrow)?;
    let encodings = get_encodings(&arrow);
    let options = write_options();
    let m = s.messages;
    let item = |i: u32| &s.items[i as usize];
    let score = |j: u32| &s.score.unwrap_or(&[])[j as usize];
    let shops = name_array(m.shop_names.iter().map(String::as_str));
    let buyers = name_array(m.buyer_names.iter().map(String::as_str));
    let agents = name_array(m.agent_names.iter().map(String::as_str));
    let metrics = name_array(s.metrics.iter().map(|k| k.id.as_str()));
    let r = s.ranks;
    let metric_rank = metric_ranks(s.metrics);
    // One value of either kind of row.
    fn pick<T>(r: Row, msg: impl Fn(u32) -> T, sc: impl Fn(u32) -> T) -> T {
        match r {
            Row::Message(i) => msg(i),
            Row::Score(j) => sc(j),
        }
    }
    let mut groups = Vec::new();
    for chunk in rows.chunks(ROW_GROUP_ROWS) {
        // Timestamps are mostly distinct; durations, flags and names repeat.
        let mut columns = vec![
            name_column(
                chunk,
                &shops,
                &r.shop,
                |i| item(i).shop as usize,
                |j| score(j).1.shop_id,
            ),
            name_column(
                chunk,
                &buyers,
                &r.buyer,
                |i| item(i).buyer as usize,
                |j| score(j).1.buyer_id,
            ),
            name_column(
                chunk,
                &agents,
                &r.agent,
                |i| item(i).agent as usize,
                |j| score(j).1.agent_id,
            ),
            name_column(
                chunk,
                &metrics,
                &metric_rank,
                |i| item(i).metric as usize,
                |j| score(j).0,
            ),
            (
                int_column(chunk, &dtypes[4], |r| {
                    pick(r, |i| Some(item(i).start), |j| Some(score(j).1.start))
                }),
                Hint::None,
            ),
            (
                int_column(chunk, &dtypes[5], |r| {
                    pick(r, |i| item(i).reply, |j| score(j).1.reply)
                }),
                Hint::None,
            ),
            (
                int_column(chunk, &dtypes[6], |r| {
                    pick(r, |i| item(i).latency_ms, |j| score(j).1.latency_ms)
                }),
                Hint::Repeats,
            ),
            (
                int_column(chunk, &dtypes[7], |r| {
                    pick(r, |i| item(i).counted_ms, |j| score(j).1.counted_ms)
                }),
                Hint::Repeats,
            ),
            (
                bool_column(chunk, |r| {
                    pick(r, |i| item(i).passed, |j| score(j).1.passed)
                }),
                Hint::None,
            ),
            (
                text_column(chunk, |r| {
                    pick(
                        r,
                        |i| item(i).excluded.map(|e| e.as_str()),
                        |j| score(j).1.excluded,
                    )
                }),
                Hint::Repeats,
            ),
        ];
        if s.score.is_some() {
            columns.push((
                text_column(chunk, |r| pick(r, |_| None, |j| score(j).1.order_id)),
                Hint::None,
            ));
            // What a message item added to its numerator (§8.2 "Items"):
            // 1 or 0 for rates, the counted ms for mean latency, null when
            // excluded.
            columns.push((
                int_column(chunk, &dtypes[11], |r| {
                    pick(
                        r,
                        |i| {
                            let it = item(i);
                            match it.excluded {
                                Some(_) => None,
                                None => it.passed.map(i64::from).or(it.counted_ms),
                            }
                        },
                        |j| score(j).1.counted,
                    )
                }),
                Hint::Repeats,
            ));
        }
        let pages = row_group(columns, parquet.fields(), &encodings, options)?;
        groups.push((chunk.len() as u64, pages));
    }
    Ok(Encoded { schema, groups })
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
