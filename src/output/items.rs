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

/// A bucket's scorecard items (§8.2), each with its metric id, in the
/// order found: [`encode_items`] sorts them as the table is (shop_id,
/// agent_id, metric, buyer_id, start), stably.
pub type ScoreItems<'a> = [(&'a str, ScoreItem<'a>)];

/// A name's place among a bucket's message names of its column, for
/// sorting and merging rows by integers instead of strings: `key` orders
/// as the strings do, `id` is equal exactly for equal strings (for the
/// encoder's dictionary). A message name of rank `r`: key `r << 32 |
/// u32::MAX`, id `r`. Another name, `p` message names below it and `q`th
/// among the other names of the bucket's scorecard items: key `p << 32 |
/// q` (between the message names around it), id `distinct + q`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Place {
    key: u64,
    id: u32,
}

impl Place {
    fn of_rank(r: u32) -> Place {
        Place {
            key: u64::from(r) << 32 | u64::from(u32::MAX),
            id: r,
        }
    }
}

/// The places ([`Place`]) of one column's names in the scorecard items:
/// `ids` gives an item's message id when it has one, `text` its name.
fn places<'a>(
    n: usize,
    names: &[String],
    rank: &[u32],
    ids: impl Fn(usize) -> Option<u32>,
    text: impl Fn(usize) -> &'a str,
) -> Vec<Place> {
    let mut out: Vec<Place> = Vec::with_capacity(n);
    let mut other: Vec<(&str, u32)> = Vec::new();
    for j in 0..n {
        match ids(j) {
            Some(id) => out.push(Place::of_rank(rank[id as usize])),
            None => {
                other.push((text(j), j as u32));
                out.push(Place { key: 0, id: 0 });
            }
        }
    }
    if other.is_empty() {
        return out;
    }
    // The message names in order, one per rank.
    let distinct = rank.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut by_rank = vec![0u32; distinct];
    for (id, &r) in rank.iter().enumerate() {
        by_rank[r as usize] = id as u32;
    }
    let name = |r: usize| names[by_rank[r] as usize].as_str();
    other.sort_unstable();
    let mut q = 0u32;
    let mut prev: Option<(&str, Place)> = None;
    for &(s, j) in &other {
        let place = match prev {
            Some((p, place)) if p == s => place,
            _ => {
                let p = by_rank.partition_point(|&id| names[id as usize].as_str() < s);
                let place = if p < distinct && name(p) == s {
                    Place::of_rank(p as u32)
                } else {
                    q += 1;
                    Place {
                        key: (p as u64) << 32 | u64::from(q - 1),
                        id: (distinct as u32) + q - 1,
                    }
                };
                prev = Some((s, place));
                place
            }
        };
        out[j as usize] = place;
    }
    out
}

/// An item's place in the table: (shop_id, agent_id, metric, buyer_id)
/// as places ([`Place`] keys; the metric's rank), then `start`.
type ItemKey = (u64, u64, u32, u64, i64);

/// Where the scorecard items' names fall among the bucket's message names
/// (see [`Place`]), per column, and the metric ids' ranks among the
/// message and scorecard metric ids together.
struct ScorePlaces {
    shop: Vec<Place>,
    agent: Vec<Place>,
    buyer: Vec<Place>,
    /// The metric ids: the message metrics', then the other scorecard
    /// metrics' (each once), and their ranks.
    metric_ids: Vec<String>,
    metric_rank: Vec<u32>,
    /// Each scorecard item's metric (an index into `metric_ids`).
    score_metric: Vec<u32>,
}

impl ScorePlaces {
    fn of(s: &ItemSources, score: &ScoreItems) -> ScorePlaces {
        let (m, r, n) = (s.messages, s.ranks, score.len());
        let it = |j: usize| &score[j].1;
        // The metric ids: the message metrics', then the scorecard's.
        let mut ids: Vec<String> = s.metrics.iter().map(|k| k.id.clone()).collect();
        let first = ids.len();
        let score_metric: Vec<u32> = score
            .iter()
            .map(|(id, _)| match ids[first..].iter().position(|x| x == id) {
                Some(k) => (first + k) as u32,
                None => {
                    ids.push(id.to_string());
                    ids.len() as u32 - 1
                }
            })
            .collect();
        let metric_rank = name_ranks(&ids);
        ScorePlaces {
            shop: places(
                n,
                &m.shop_names,
                &r.shop,
                |j| it(j).ids.map(|i| i.shop),
                |j| it(j).shop_id,
            ),
            agent: places(
                n,
                &m.agent_names,
                &r.agent,
                |j| it(j).ids.map(|i| i.agent),
                |j| it(j).agent_id,
            ),
            buyer: places(
                n,
                &m.buyer_names,
                &r.buyer,
                |j| it(j).ids.map(|i| i.buyer),
                |j| it(j).buyer_id,
            ),
            metric_ids: ids,
            metric_rank,
            score_metric,
        }
    }

    /// Scorecard item `j`'s sort key (before its position).
    fn key(&self, j: usize, start: i64) -> ItemKey {
        (
            self.shop[j].key,
            self.agent[j].key,
            self.metric_rank[self.score_metric[j] as usize],
            self.buyer[j].key,
            start,
        )
    }
}

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
/// The message items' keys in table order: ((shop rank, agent rank),
/// (metric rank, buyer rank), start, index), the ranks packed by 32 bits.
type MessageKey = (u64, u64, i64, u32);

fn message_order(s: &ItemSources) -> Vec<MessageKey> {
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
    keyed
}

/// The scorecard items in table order (copied, so that each column reads
/// them in order), with what their name columns need: each item's metric
/// (an index into [`ScorePlaces::metric_ids`]) and its names' place ids.
/// Empty when the bucket has no scorecard rows.
#[derive(Default)]
struct SortedScore<'a> {
    items: Vec<ScoreItem<'a>>,
    metric: Vec<u32>,
    shop: Vec<u32>,
    agent: Vec<u32>,
    buyer: Vec<u32>,
}

/// One of the three name columns of the `items` table.
#[derive(Clone, Copy)]
enum NameCol {
    Shop,
    Buyer,
    Agent,
}

impl NameCol {
    /// A message item's name: its id in the bucket's names of the column.
    fn of_message(self, it: &Item) -> usize {
        (match self {
            NameCol::Shop => it.shop,
            NameCol::Buyer => it.buyer,
            NameCol::Agent => it.agent,
        }) as usize
    }
}

impl<'a> SortedScore<'a> {
    /// Scorecard row `t`'s name in `col`: its id in the bucket's message
    /// names when it has one (`Ok`), else its text and place id (`Err`).
    fn name(&self, t: u32, col: NameCol) -> Result<usize, (&'a str, u32)> {
        let (it, t) = (&self.items[t as usize], t as usize);
        let (id, text, place) = match col {
            NameCol::Shop => (it.ids.map(|x| x.shop), it.shop_id, self.shop[t]),
            NameCol::Buyer => (it.ids.map(|x| x.buyer), it.buyer_id, self.buyer[t]),
            NameCol::Agent => (it.ids.map(|x| x.agent), it.agent_id, self.agent[t]),
        };
        match id {
            Some(k) => Ok(k as usize),
            None => Err((text, place)),
        }
    }
}

/// Every row in table order: the message items (already in table order)
/// and the scorecard items, sorted stably and merged by (shop_id,
/// agent_id, metric, buyer_id, start), a message item first on equal keys
/// (as a stable sort of the message items followed by the scorecard's
/// would place them). Compared by places ([`Place`]), not strings. A
/// [`Row::Score`] is a place in the returned [`SortedScore`].
fn table_order<'a>(
    s: &ItemSources<'a>,
    keys: &[MessageKey],
    places: Option<&ScorePlaces>,
) -> (Vec<Row>, SortedScore<'a>) {
    let (score, Some(p)) = (s.score.unwrap_or(&[]), places) else {
        let rows = (0..keys.len() as u32).map(Row::Message).collect();
        return (rows, SortedScore::default());
    };
    let mut sorted: Vec<(ItemKey, u32)> = score
        .iter()
        .enumerate()
        .map(|(j, (_, it))| (p.key(j, it.start), j as u32))
        .collect();
    sorted.sort_unstable();
    let n = sorted.len();
    let mut by_place = SortedScore {
        items: Vec::with_capacity(n),
        metric: Vec::with_capacity(n),
        shop: Vec::with_capacity(n),
        agent: Vec::with_capacity(n),
        buyer: Vec::with_capacity(n),
    };
    for &(_, j) in &sorted {
        let j = j as usize;
        by_place.items.push(score[j].1);
        by_place.metric.push(p.score_metric[j]);
        by_place.shop.push(p.shop[j].id);
        by_place.agent.push(p.agent[j].id);
        by_place.buyer.push(p.buyer[j].id);
    }
    // A message item's key from its sorted key (its metric's rank among
    // the message metrics mapped to the rank among all metric ids).
    let mut metric = vec![0u32; s.metrics.len()];
    for (k, &r) in metric_ranks(s.metrics).iter().enumerate() {
        metric[r as usize] = p.metric_rank[k];
    }
    let low = |x: u64| Place::of_rank(x as u32).key;
    let msg_key = |i: usize| {
        let (shop_agent, metric_buyer, start, _) = keys[i];
        (
            low(shop_agent >> 32),
            low(shop_agent),
            metric[(metric_buyer >> 32) as usize],
            low(metric_buyer),
            start,
        )
    };
    let m = s.items.len();
    let mut out = Vec::with_capacity(m + n);
    let (mut i, mut t) = (0, 0);
    while i < m || t < n {
        if t < n && (i == m || sorted[t].0 < msg_key(i)) {
            out.push(Row::Score(t as u32));
            t += 1;
        } else {
            out.push(Row::Message(i as u32));
            i += 1;
        }
    }
    (out, by_place)
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

/// A name column: a row's name is a view of `dict` (the bucket's distinct
/// names), copied, when `name` gives its index there (`Ok`), else its own
/// text with its id (`Err`). Its hint: ids equal exactly for equal names,
/// `rank` of a `dict` name, the given id of another.
fn name_column<'r>(
    rows: &[Row],
    dict: &Utf8ViewArray,
    rank: &[u32],
    name: impl Fn(Row) -> Result<usize, (&'r str, u32)>,
) -> (Box<dyn Array>, Hint) {
    let base = dict.data_buffers().len() as u32;
    let mut extra: Vec<u8> = Vec::new();
    let mut ids: Vec<u32> = Vec::with_capacity(rows.len());
    let views: Vec<View> = rows
        .iter()
        .map(|r| match name(*r) {
            Ok(k) => {
                ids.push(rank[k]);
                dict.views()[k]
            }
            Err((text, id)) => {
                ids.push(id);
                let b = text.as_bytes();
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
    (Box::new(array), Hint::Ids(ids))
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
    let keys = message_order(&s);
    // The message items in table order: each column below then reads them
    // in order (not at random, once per column).
    crate::model::permute(s.items, keys.iter().map(|k| k.3).collect());
    let places = s
        .score
        .filter(|x| !x.is_empty())
        .map(|x| ScorePlaces::of(&s, x));
    let (rows, sorted) = table_order(&s, &keys, places.as_ref());
    drop(keys);
    let schema = schema(s.score.is_some());
    let arrow = schema.to_arrow(CompatLevel::newest());
    let dtypes: Vec<ArrowDataType> = arrow.iter_values().map(|f| f.dtype().clone()).collect();
    let parquet = to_parquet_schema(&arrow)?;
    let encodings = get_encodings(&arrow);
    let options = write_options();
    let m = s.messages;
    let item = |i: u32| &s.items[i as usize];
    let score = |t: u32| &sorted.items[t as usize];
    let shops = name_array(m.shop_names.iter().map(String::as_str));
    let buyers = name_array(m.buyer_names.iter().map(String::as_str));
    let agents = name_array(m.agent_names.iter().map(String::as_str));
    let r = s.ranks;
    // The metric ids and their ranks: the message metrics', then the
    // scorecard's when there are scorecard rows (so that ids stay equal
    // exactly for equal ids across both kinds of rows).
    let (metrics, metric_rank) = match &places {
        Some(p) => (
            name_array(p.metric_ids.iter().map(String::as_str)),
            p.metric_rank.clone(),
        ),
        None => (
            name_array(s.metrics.iter().map(|k| k.id.as_str())),
            metric_ranks(s.metrics),
        ),
    };
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
        let names = [
            (NameCol::Shop, &shops, &r.shop),
            (NameCol::Buyer, &buyers, &r.buyer),
            (NameCol::Agent, &agents, &r.agent),
        ];
        let mut columns: Vec<(Box<dyn Array>, Hint)> = names
            .into_iter()
            .map(|(col, dict, rank)| {
                name_column(chunk, dict, rank, |row| {
                    pick(
                        row,
                        |i| Ok(col.of_message(item(i))),
                        |t| sorted.name(t, col),
                    )
                })
            })
            .collect();
        columns.extend([
            name_column(chunk, &metrics, &metric_rank, |row| {
                pick(
                    row,
                    |i| Ok(item(i).metric as usize),
                    |t| Ok(sorted.metric[t as usize] as usize),
                )
            }),
            (
                int_column(chunk, &dtypes[4], |r| {
                    pick(r, |i| Some(item(i).start), |j| Some(score(j).start))
                }),
                Hint::None,
            ),
            (
                int_column(chunk, &dtypes[5], |r| {
                    pick(r, |i| item(i).reply, |j| score(j).reply)
                }),
                Hint::None,
            ),
            (
                int_column(chunk, &dtypes[6], |r| {
                    pick(r, |i| item(i).latency_ms, |j| score(j).latency_ms)
                }),
                Hint::Repeats,
            ),
            (
                int_column(chunk, &dtypes[7], |r| {
                    pick(r, |i| item(i).counted_ms, |j| score(j).counted_ms)
                }),
                Hint::Repeats,
            ),
            (
                bool_column(chunk, |r| pick(r, |i| item(i).passed, |j| score(j).passed)),
                Hint::None,
            ),
            (
                text_column(chunk, |r| {
                    pick(
                        r,
                        |i| item(i).excluded.map(|e| e.as_str()),
                        |j| score(j).excluded,
                    )
                }),
                Hint::Repeats,
            ),
        ]);
        if s.score.is_some() {
            columns.push((
                text_column(chunk, |r| pick(r, |_| None, |j| score(j).order_id)),
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
                        |j| score(j).counted,
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
