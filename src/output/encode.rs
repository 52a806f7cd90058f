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
