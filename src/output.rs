//! Output tables (SPEC §5): build them from a day's result and commit each
//! partition atomically.
//!
//! A partition is one file, `DIR/<table>/platform=P/dt=D/part-0.parquet`. It
//! is written to a hidden staging file beside it (`.part-0.parquet.<pid>.tmp`,
//! which Hive-style readers skip), flushed to disk, and renamed over the old
//! file: a rename within a directory is atomic, so a reader sees the old
//! partition or the new one, never a mix, and a failed run leaves the old one.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use polars::prelude::*;

use crate::engine::DayResult;
use crate::error::{Error, Result};
use crate::input::Messages;
use crate::rules::{Kind, Metric};

/// The tables a day writes.
pub const TABLES: &[&str] = &["shop_daily", "agent_daily", "items"];

/// The value of a metric row: a share for rates, seconds for mean latency.
pub fn value(kind: Kind, numerator: i64, denominator: i64) -> f64 {
    match kind {
        Kind::Rate => numerator as f64 / denominator as f64,
        Kind::MeanLatency => numerator as f64 / denominator as f64 / 1000.0,
    }
}

/// `shop_daily`: one row per shop and metric with a non-empty denominator,
/// sorted by shop_id, metric.
pub fn shop_daily(m: &Messages, metrics: &[&Metric], r: &DayResult) -> PolarsResult<DataFrame> {
    let mut rows: Vec<(&str, &str, i64, i64, f64, String)> = r
        .by_shop()
        .into_iter()
        .map(|((shop, k), c)| {
            let metric = metrics[k as usize];
            (
                m.shop_names[shop as usize].as_str(),
                metric.id.as_str(),
                c.numerator,
                c.denominator,
                value(metric.kind, c.numerator, c.denominator),
                metric.rule_version(),
            )
        })
        .collect();
    rows.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    DataFrame::new_infer_height(vec![
        Column::new(
            "shop_id".into(),
            rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        ),
        Column::new(
            "metric".into(),
            rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        ),
        Column::new(
            "numerator".into(),
            rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        ),
        Column::new(
            "denominator".into(),
            rows.iter().map(|r| r.3).collect::<Vec<_>>(),
        ),
        Column::new("value".into(), rows.iter().map(|r| r.4).collect::<Vec<_>>()),
        Column::new(
            "rule_version".into(),
            rows.iter().map(|r| r.5.as_str()).collect::<Vec<_>>(),
        ),
    ])
}

/// `agent_daily`: like `shop_daily` with `agent_id` (the agent of each item,
/// SPEC §2), sorted by shop_id, agent_id, metric. Its rows add up to
/// `shop_daily`'s: the shop rows are computed as their sums.
pub fn agent_daily(m: &Messages, metrics: &[&Metric], r: &DayResult) -> PolarsResult<DataFrame> {
    let mut rows: Vec<(&str, &str, &str, i64, i64, f64, String)> = r
        .by_agent
        .iter()
        .map(|(&(shop, agent, k), c)| {
            let metric = metrics[k as usize];
            (
                m.shop_names[shop as usize].as_str(),
                m.agent_names[agent as usize].as_str(),
                metric.id.as_str(),
                c.numerator,
                c.denominator,
                value(metric.kind, c.numerator, c.denominator),
                metric.rule_version(),
            )
        })
        .collect();
    rows.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
    DataFrame::new_infer_height(vec![
        Column::new(
            "shop_id".into(),
            rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        ),
        Column::new(
            "agent_id".into(),
            rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        ),
        Column::new(
            "metric".into(),
            rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        ),
        Column::new(
            "numerator".into(),
            rows.iter().map(|r| r.3).collect::<Vec<_>>(),
        ),
        Column::new(
            "denominator".into(),
            rows.iter().map(|r| r.4).collect::<Vec<_>>(),
        ),
        Column::new("value".into(), rows.iter().map(|r| r.5).collect::<Vec<_>>()),
        Column::new(
            "rule_version".into(),
            rows.iter().map(|r| r.6.as_str()).collect::<Vec<_>>(),
        ),
    ])
}

/// `items`: one row per counted or excluded item, sorted by shop_id,
/// agent_id, metric, then buyer_id and start.
pub fn items(m: &Messages, metrics: &[&Metric], r: &DayResult) -> PolarsResult<DataFrame> {
    let mut order: Vec<usize> = (0..r.items.len()).collect();
    let key = |i: usize| {
        let it = &r.items[i];
        (
            m.shop_names[it.shop as usize].as_str(),
            m.agent_names[it.agent as usize].as_str(),
            metrics[it.metric as usize].id.as_str(),
            m.buyer_names[it.buyer as usize].as_str(),
            it.start,
        )
    };
    order.sort_by(|&a, &b| key(a).cmp(&key(b)));
    let it = |f: &dyn Fn(&crate::engine::Item) -> Option<i64>| -> Vec<Option<i64>> {
        order.iter().map(|&i| f(&r.items[i])).collect()
    };
    let ts = |name: &str, v: Vec<Option<i64>>| -> PolarsResult<Column> {
        Column::new(name.into(), v).cast(&DataType::Datetime(
            TimeUnit::Milliseconds,
            Some(TimeZone::UTC),
        ))
    };
    DataFrame::new_infer_height(vec![
        Column::new(
            "shop_id".into(),
            order.iter().map(|&i| key(i).0).collect::<Vec<_>>(),
        ),
        Column::new(
            "buyer_id".into(),
            order.iter().map(|&i| key(i).3).collect::<Vec<_>>(),
        ),
        Column::new(
            "agent_id".into(),
            order.iter().map(|&i| key(i).1).collect::<Vec<_>>(),
        ),
        Column::new(
            "metric".into(),
            order.iter().map(|&i| key(i).2).collect::<Vec<_>>(),
        ),
        ts("start", it(&|x| Some(x.start)))?,
        ts("reply", it(&|x| x.reply))?,
        Column::new("latency_ms".into(), it(&|x| x.latency_ms)),
        Column::new("counted_ms".into(), it(&|x| x.counted_ms)),
        Column::new(
            "passed".into(),
            order.iter().map(|&i| r.items[i].passed).collect::<Vec<_>>(),
        ),
        Column::new(
            "excluded".into(),
            order
                .iter()
                .map(|&i| r.items[i].excluded.map(|e| e.as_str()))
                .collect::<Vec<_>>(),
        ),
    ])
}

/// The folder of one partition.
pub fn partition_dir(out: &Path, table: &str, platform: &str, day: NaiveDate) -> PathBuf {
    out.join(table)
        .join(format!("platform={platform}"))
        .join(format!("dt={day}"))
}

/// Writes `df` as the partition's `part-0.parquet`, replacing any previous
/// one atomically.
pub fn commit_partition(
    out: &Path,
    table: &str,
    platform: &str,
    day: NaiveDate,
    df: &mut DataFrame,
) -> Result<PathBuf> {
    let dir = partition_dir(out, table, platform, day);
    let io = |what: &str, p: &Path, e: &dyn std::fmt::Display| {
        Error::Io(format!("cannot {what} {}: {e}", p.display()))
    };
    fs::create_dir_all(&dir).map_err(|e| io("create", &dir, &e))?;
    let final_path = dir.join("part-0.parquet");
    let staged = dir.join(format!(".part-0.parquet.{}.tmp", std::process::id()));
    let result = (|| -> Result<()> {
        let mut file = File::create(&staged).map_err(|e| io("create", &staged, &e))?;
        ParquetWriter::new(&mut file)
            .with_statistics(StatisticsOptions::full())
            .finish(df)
            .map_err(|e| io("write", &staged, &e))?;
        file.flush().map_err(|e| io("write", &staged, &e))?;
        file.sync_all().map_err(|e| io("sync", &staged, &e))?;
        fs::rename(&staged, &final_path).map_err(|e| io("commit", &final_path, &e))?;
        // Make the rename itself durable.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&staged);
    }
    result.map(|_| final_path)
}
