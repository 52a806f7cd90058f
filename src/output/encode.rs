//! A frame encoded into Parquet row groups (compressed pages) away from the
//! file it goes to, so that a bucket's worker does the encoding and the
//! thread that writes the day's `items` file in shop order only appends
//! bytes. A bucket's items then wait for their turn as compressed pages, a
//! fraction of the frame's memory.
//!
//! The pages are those [`super::StagedPartition::write`] makes of the same
//! frame (same options, row groups of [`ROW_GROUP_ROWS`] rows), so the file
//! is byte for byte the same whichever way it was written.

use polars::io::parquet::write::{get_encodings, ParquetCompression, StatisticsOptions};
use polars::prelude::*;
use polars_parquet::write::{
    array_to_columns, compress, to_parquet_schema, CompressedPage, Version, WriteOptions,
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
            let mut columns = Vec::new();
            for ((array, type_), encoding) in batch
                .columns()
                .iter()
                .zip(parquet.fields())
                .zip(encodings.iter())
            {
                for pages in array_to_columns(array, type_.clone(), options, encoding)? {
                    let pages = pages
                        .map(|p| Ok(compress(p?, Vec::new(), options.compression)?))
                        .collect::<PolarsResult<Vec<CompressedPage>>>()?;
                    columns.push(pages);
                }
            }
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
