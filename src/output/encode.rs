//! Row groups encoded into Parquet pages (compressed) away from the file
//! they go to, so that a bucket's worker does the encoding and the thread
//! that writes the day's `items` file in shop order only appends bytes. A
//! bucket's items then wait for their turn as compressed pages.
//!
//! The pages are those [`super::StagedPartition::write`] makes of the same
//! rows as a frame (same options, row groups of [`ROW_GROUP_ROWS`] rows),
//! so the file is byte for byte the same whichever way it was written: the
//! writer's choice between a dictionary and plain values is taken here as
//! the writer takes it ([`choose`]), only with less hashing. [`encode`]
//! does this for a frame; [`super::items::encode_items`] for arrays built
//! straight from the items.

use polars::io::parquet::write::{get_encodings, ParquetCompression, StatisticsOptions};
use polars::prelude::*;
use polars_arrow::array::{
    Array, DictionaryArray, MutableBinaryViewArray, PrimitiveArray, Utf8ViewArray,
};
use polars_arrow::bitmap::Bitmap;
use polars_arrow::datatypes::{ArrowDataType, IntegerType, PhysicalType, PrimitiveType};
use polars_compute::cardinality::estimate_cardinality;
use polars_parquet::write::{
    array_to_columns, array_to_pages, compress, to_nested, to_parquet_leaves, to_parquet_schema,
    CompressedPage, Encoding, ParquetType, Version, WriteOptions,
};

/// Rows per row group of a data file.
pub const ROW_GROUP_ROWS: usize = 512 * 512;

/// The write options of every data file kefu writes: full statistics,
/// polars' default compression (Zstandard), format version 1.
pub fn write_options() -> WriteOptions {
    WriteOptions {
        statistics: StatisticsOptions::full(),
        compression: ParquetCompression::default().into(),
        version: Version::V1,
        data_page_size: None,
    }
}

/// A frame's row groups, encoded: rows, then the compressed pages of each
/// column (leaf) in schema order.
pub struct Encoded {
    pub(super) schema: Schema,
    pub(super) groups: Vec<(u64, Vec<Vec<CompressedPage>>)>,
}

impl Encoded {
    /// Rows encoded.
    pub fn height(&self) -> usize {
        self.groups.iter().map(|g| g.0 as usize).sum()
    }
}

/// What a column's builder knows of its values, to spare the dictionary
/// decision work (the decision and the pages are the same whatever it is).
pub(super) enum Hint {
    /// Nothing: the cardinality estimated first, as the writer does.
    None,
    /// Values repeat: the distinct values found first (one hash map), the
    /// estimate then taken from them alone.
    Repeats,
    /// An id per row, equal ids exactly for equal values (any id on a null
    /// row): the distinct values found without hashing.
    Ids(Vec<u32>),
}

/// One row group's compressed pages: `columns` (arrays of equal length, in
/// schema order, each with its [`Hint`]) encoded as the file writer
/// encodes them.
pub(super) fn row_group(
    columns: Vec<(Box<dyn Array>, Hint)>,
    fields: &[ParquetType],
    encodings: &[Vec<Encoding>],
    options: WriteOptions,
) -> PolarsResult<Vec<Vec<CompressedPage>>> {
    let mut out = Vec::new();
    for (((array, hint), type_), encoding) in columns.into_iter().zip(fields).zip(encodings) {
        let columns = match choose(array.as_ref(), encoding, hint) {
            Choice::Writer => array_to_columns(&array, type_.clone(), options, encoding)?,
            Choice::Dictionary(dict) => array_to_columns(dict, type_.clone(), options, encoding)?,
            Choice::Plain => {
                let nested = to_nested(array.as_ref(), type_)?.remove(0);
                let leaf = to_parquet_leaves(type_.clone()).remove(0);
                vec![array_to_pages(
                    array.as_ref(),
                    leaf,
                    &nested,
                    options,
                    Encoding::Plain,
                )?]
            }
        };
        for pages in columns {
            let pages = pages
                .map(|p| Ok(compress(p?, Vec::new(), options.compression)?))
                .collect::<PolarsResult<Vec<CompressedPage>>>()?;
            out.push(pages);
        }
    }
    Ok(out)
}

/// How a column is encoded: as the writer decides (`Writer`), or the
/// writer's decision taken here, with the dictionary built here.
enum Choice {
    Writer,
    Plain,
    Dictionary(Box<dyn Array>),
}

/// A column of a type [`choose`] decides for.
#[derive(Clone, Copy)]
enum Values<'a> {
    Int(&'a PrimitiveArray<i64>),
    Text(&'a Utf8ViewArray),
}

impl<'a> Values<'a> {
    fn of(array: &'a dyn Array) -> Option<Values<'a>> {
        match array.dtype().to_physical_type() {
            PhysicalType::Primitive(PrimitiveType::Int64) => {
                array.as_any().downcast_ref().map(Values::Int)
            }
            PhysicalType::Utf8View => array.as_any().downcast_ref().map(Values::Text),
            _ => None,
        }
    }

    /// Each row's key (its value's place among the distinct values in
    /// order of first appearance; 0 on a null row) and the rows where the
    /// distinct values first appear.
    fn first_appearance(self, hint: &Hint) -> (Vec<u32>, Vec<u32>) {
        let validity = match self {
            Values::Int(a) => a.validity(),
            Values::Text(a) => a.validity(),
        };
        match (self, hint) {
            (_, Hint::Ids(ids)) => by_ids(ids, validity),
            (Values::Int(a), _) => by_hash(a.len(), |r| a.is_valid(r).then(|| a.value(r))),
            (Values::Text(a), _) => by_hash(a.len(), |r| a.is_valid(r).then(|| a.value(r))),
        }
    }

    /// The values of `rows`, with the nulls' stand-in (`0`, `""`) after
    /// them when `with_default` and it is not among them.
    fn gather(self, rows: &[u32], with_default: bool) -> Box<dyn Array> {
        match self {
            Values::Int(a) => {
                let mut v: Vec<i64> = rows.iter().map(|&r| a.value(r as usize)).collect();
                if with_default && !v.contains(&0) {
                    v.push(0);
                }
                Box::new(PrimitiveArray::new(a.dtype().clone(), v.into(), None))
            }
            Values::Text(a) => {
                let mut b = MutableBinaryViewArray::<str>::with_capacity(rows.len() + 1);
                let mut has_default = false;
                for &r in rows {
                    let v = a.value(r as usize);
                    has_default |= v.is_empty();
                    b.push_value(v);
                }
                if with_default && !has_default {
                    b.push_value("");
                }
                Box::new(b.freeze())
            }
        }
    }

    fn dtype(self) -> &'a ArrowDataType {
        match self {
            Values::Int(a) => a.dtype(),
            Values::Text(a) => a.dtype(),
        }
    }
}

/// The writer's dictionary decision for a flat column
/// (`encode_as_dictionary_optional` in polars-parquet 0.55.2, which
/// `Cargo.toml` pins): an integer column whose values span at most
/// `u16::MAX` gets the writer's own bitmask dictionary; otherwise a column
/// whose estimated cardinality is above 3/4 of its length (past 128 rows)
/// is written plain, and any other gets a dictionary of its distinct
/// values in order of first appearance, which the writer builds by hashing
/// every value through `MutableDictionaryArray`, and this with one map or
/// none. The estimate (HyperLogLog) depends only on the set of values
/// hashed (a null hashes as `0` or `""`), so it is taken from the distinct
/// values when they are known. The same dictionary makes the same pages
/// (checked by the tests against the writer itself).
fn choose(array: &dyn Array, encoding: &[Encoding], hint: Hint) -> Choice {
    if encoding != [Encoding::RleDictionary] || array.is_empty() {
        return Choice::Writer;
    }
    let Some(values) = Values::of(array) else {
        return Choice::Writer;
    };
    if let Values::Int(a) = values {
        let mut range: Option<(i64, i64)> = None;
        for v in a.non_null_values_iter() {
            range = Some(match range {
                None => (v, v),
                Some((lo, hi)) => (lo.min(v), hi.max(v)),
            });
        }
        if let Some((lo, hi)) = range {
            if hi
                .checked_sub(lo)
                .is_some_and(|d| d as u64 <= u16::MAX as u64)
            {
                return Choice::Writer;
            }
        }
    }
    let n = array.len();
    let plain = |estimate: usize| n > 128 && (estimate as f64) / (n as f64) > 0.75;
    let found = match hint {
        Hint::None => {
            if plain(estimate_cardinality(array)) {
                return Choice::Plain;
            }
            values.first_appearance(&Hint::None)
        }
        hint => {
            let found = values.first_appearance(&hint);
            let estimate = if array.null_count() == n {
                1 // as `estimate_cardinality` answers
            } else {
                let set = values.gather(&found.1, array.null_count() > 0);
                estimate_cardinality(set.as_ref())
            };
            if plain(estimate) {
                return Choice::Plain;
            }
            found
        }
    };
    let (keys, firsts) = found;
    let keys = PrimitiveArray::new(
        ArrowDataType::UInt32,
        keys.into(),
        array.validity().cloned().filter(|v| v.unset_bits() > 0),
    );
    let dtype =
        ArrowDataType::Dictionary(IntegerType::UInt32, Box::new(values.dtype().clone()), false);
    match DictionaryArray::<u32>::try_new(dtype, keys, values.gather(&firsts, false)) {
        Ok(d) => Choice::Dictionary(Box::new(d)),
        Err(_) => Choice::Writer,
    }
}

/// [`Values::first_appearance`] with one hash map: `value(row)` is row
/// `row`'s value (`None`: null) of `n` rows.
fn by_hash<T: Copy + Eq + std::hash::Hash>(
    n: usize,
    value: impl Fn(usize) -> Option<T>,
) -> (Vec<u32>, Vec<u32>) {
    // Room for a distinct value in 8 rows without growing.
    let room = (n / 8).max(1024);
    let mut seen: hashbrown::HashMap<T, u32, foldhash::fast::FixedState> =
        hashbrown::HashMap::with_capacity_and_hasher(room, foldhash::fast::FixedState::default());
    let mut firsts = Vec::new();
    let mut keys = Vec::with_capacity(n);
    for row in 0..n {
        let Some(v) = value(row) else {
            keys.push(0);
            continue;
        };
        let next = firsts.len() as u32;
        let k = *seen.entry(v).or_insert(next);
        if k == next {
            firsts.push(row as u32);
        }
        keys.push(k);
    }
    (keys, firsts)
}

/// [`Values::first_appearance`] from ids (no hashing).
fn by_ids(ids: &[u32], validity: Option<&Bitmap>) -> (Vec<u32>, Vec<u32>) {
    let top = ids.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut slot = vec![u32::MAX; top];
    let mut firsts = Vec::new();
    let keys = ids
        .iter()
        .enumerate()
        .map(|(row, &id)| {
            if validity.is_some_and(|v| !v.get_bit(row)) {
                return 0;
            }
            let s = &mut slot[id as usize];
            if *s == u32::MAX {
                *s = firsts.len() as u32;
                firsts.push(row as u32);
            }
            *s
        })
        .collect();
    (keys, firsts)
}

/// Encodes `df` as a data file's row groups (one per [`ROW_GROUP_ROWS`]
/// rows), on the calling thread.
pub fn encode(df: &DataFrame) -> PolarsResult<Encoded> {
    let schema = df.schema().as_ref().clone();
    let arrow = schema.to_arrow(CompatLevel::newest());
    let parquet = to_parquet_schema(&arrow)?;
    let encodings = get_encodings(&arrow);
    let options = write_options();
    let mut groups = Vec::new();
    let mut offset = 0;
    while offset < df.height() {
        let mut piece = df.slice(offset as i64, ROW_GROUP_ROWS);
        piece.rechunk_mut();
        for batch in piece.iter_chunks(CompatLevel::newest(), false) {
            if batch.is_empty() {
                continue;
            }
            let columns = batch
                .columns()
                .iter()
                .map(|c| (c.clone(), Hint::None))
                .collect();
            let columns = row_group(columns, parquet.fields(), &encodings, options)?;
            groups.push((batch.len() as u64, columns));
        }
        offset += ROW_GROUP_ROWS;
    }
    Ok(Encoded { schema, groups })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::StagedPartition;
    use crate::shard::Shard;

    /// A frame with the items table's column types, nulls and repeats, of
    /// more than one row group, piece by piece.
    fn frame(rows: usize, seed: usize) -> DataFrame {
        let n = |i: usize| (i * 2654435761 + seed) % 1000;
        let ts = |v: Vec<Option<i64>>| {
            Column::new("t".into(), v)
                .cast(&DataType::Datetime(
                    TimeUnit::Milliseconds,
                    Some(TimeZone::UTC),
                ))
                .unwrap()
        };
        let shop: Vec<String> = (0..rows).map(|i| format!("shop{:03}", n(i) % 40)).collect();
        // Long names (not inline in a view) and many distinct ones.
        let buyer: Vec<String> = (0..rows)
            .map(|i| format!("buyer-with-a-long-id-{}", n(i)))
            .collect();
        let excluded: Vec<Option<&str>> = (0..rows)
            .map(|i| (n(i) % 7 == 0).then_some("unreplied"))
            .collect();
        let latency: Vec<Option<i64>> = (0..rows)
            .map(|i| (n(i) % 5 != 0).then_some((n(i) * 997) as i64))
            .collect();
        let start: Vec<Option<i64>> = (0..rows)
            .map(|i| Some(1_715_800_000_000 + i as i64))
            .collect();
        let passed: Vec<Option<bool>> = (0..rows)
            .map(|i| (n(i) % 3 != 0).then_some(n(i) % 2 == 0))
            .collect();
        DataFrame::new_infer_height(vec![
            Column::new("shop_id".into(), shop),
            Column::new("buyer_id".into(), buyer),
            ts(start).with_name("start".into()),
            Column::new("latency_ms".into(), latency),
            Column::new("passed".into(), passed),
            Column::new("excluded".into(), excluded),
        ])
        .unwrap()
    }

    fn written(
        dir: &std::path::Path,
        table: &str,
        put: impl FnOnce(&mut StagedPartition),
    ) -> Vec<u8> {
        let day = chrono::NaiveDate::from_ymd_opt(2024, 5, 16).unwrap();
        let mut p = StagedPartition::begin(dir, table, "pdd", day, Shard::WHOLE).unwrap();
        put(&mut p);
        std::fs::read(p.commit().unwrap()).unwrap()
    }

    /// The claim `write_encoded` rests on: a file of pages encoded by
    /// [`encode`] is byte for byte the file `write` makes of the same frames.
    #[test]
    fn encoded_pieces_make_the_same_file_as_written_frames() {
        let dir = tempfile::tempdir().unwrap();
        let pieces = [frame(ROW_GROUP_ROWS + 1234, 1), frame(0, 2), frame(777, 3)];
        let a = written(dir.path(), "a", |p| {
            for df in &pieces {
                if df.height() > 0 {
                    p.write(df).unwrap();
                }
            }
        });
        let b = written(dir.path(), "b", |p| {
            for df in &pieces {
                if df.height() > 0 {
                    p.write_encoded(encode(df).unwrap()).unwrap();
                }
            }
        });
        assert_eq!(encode(&pieces[0]).unwrap().height(), ROW_GROUP_ROWS + 1234);
        assert_eq!(encode(&pieces[0]).unwrap().groups.len(), 2);
        assert!(
            a == b,
            "the two files differ ({} and {} bytes)",
            a.len(),
            b.len()
        );
    }
}
