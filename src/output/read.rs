//! Reading committed partitions back: `shop_daily`, which the rolling
//! windows and the alerts are built from.

use std::path::Path;

use chrono::NaiveDate;
use polars::prelude::*;

use super::partition::{is_committed, partition_dir};
use crate::error::{Error, Result};
use crate::shard::Shard;

/// One `shop_daily` row as read back from a committed partition.
#[derive(Debug, Clone, PartialEq)]
pub struct DailyRow {
    pub shop_id: String,
    pub metric: String,
    pub numerator: i64,
    pub denominator: i64,
}

/// Reads a committed `shop_daily` partition, or None when it does not exist.
pub fn read_shop_daily(
    out: &Path,
    platform: &str,
    day: NaiveDate,
    shard: Shard,
) -> Result<Option<Vec<DailyRow>>> {
    let path = partition_dir(out, "shop_daily", platform, day).join(shard.data_file());
    if !is_committed(out, "shop_daily", platform, day, shard) {
        return Ok(None);
    }
    let bad = |e: &dyn std::fmt::Display| {
        Error::BadData(format!(
            "cannot read the committed partition {}: {e}",
            path.display()
        ))
    };
    let p = path.to_str().ok_or_else(|| bad(&"path is not UTF-8"))?;
    // The file itself, as written: no Hive keys taken from its path (an
    // `--output` under `dt=` or `platform=` folders would add them as
    // columns), no glob expansion of the path's characters.
    let args = ScanArgsParquet {
        hive_options: HiveOptions::new_disabled(),
        glob: false,
        ..Default::default()
    };
    let df = LazyFrame::scan_parquet(PlRefPath::new(p), args)
        .and_then(|lf| {
            lf.select([
                col("shop_id"),
                col("metric"),
                col("numerator"),
                col("denominator"),
            ])
            .collect()
        })
        .map_err(|e| bad(&e))?;
    let s = |n: &str| {
        df.column(n)
            .and_then(|c| c.str().cloned())
            .map_err(|e| bad(&e))
    };
    let i = |n: &str| {
        df.column(n)
            .and_then(|c| c.i64().cloned())
            .map_err(|e| bad(&e))
    };
    let (shop, metric, num, den) = (
        s("shop_id")?,
        s("metric")?,
        i("numerator")?,
        i("denominator")?,
    );
    Ok(Some(
        (0..df.height())
            .map(|k| DailyRow {
                shop_id: shop.get(k).unwrap_or_default().to_string(),
                metric: metric.get(k).unwrap_or_default().to_string(),
                numerator: num.get(k).unwrap_or(0),
                denominator: den.get(k).unwrap_or(0),
            })
            .collect(),
    ))
}
