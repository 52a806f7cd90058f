//! Hot kernels: the input build (scan, code, sort) and the engine (items and
//! counts) on a generated day, for one platform and for all six.
//!
//! Run with `cargo bench`; the whole-job comparison against DuckDB is a
//! separate script, `benches/compare.sh` (see BENCHMARKS.md).

use criterion::{criterion_group, criterion_main, Criterion};

use kefu::engine::{compute_day, EngineOptions};
use kefu::gen::{self, GenConfig};
use kefu::input::{self, DayRange};
use kefu::rules::{RuleSet, PLATFORMS};

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("day.parquet");
    let day = chrono::NaiveDate::from_ymd_opt(2024, 5, 16).unwrap();
    let cfg = GenConfig {
        seed: 1,
        rows: 400_000,
        days: 2,
        shops: 400,
        start: day,
        shuffled: true,
        row_group_size: None,
    };
    gen::write(&cfg, &path).unwrap();
    let files = vec![path.clone()];
    let pdd = RuleSet::preset("pdd").unwrap();
    let range = DayRange {
        first: day,
        last: day.succ_opt().unwrap(),
    };

    let mut g = c.benchmark_group("kefu");
    g.sample_size(10);
    g.bench_function("load 400k rows", |b| {
        b.iter(|| input::load(&files, &pdd.input, range, false, kefu::shard::Shard::WHOLE).unwrap())
    });
    let msgs = input::load(&files, &pdd.input, range, false, kefu::shard::Shard::WHOLE).unwrap();
    let pdd_metrics = pdd.in_force(day);
    g.bench_function("engine pdd", |b| {
        b.iter(|| compute_day(&msgs, &pdd_metrics, day, EngineOptions::default()))
    });
    let all: Vec<RuleSet> = PLATFORMS
        .iter()
        .map(|(p, _)| RuleSet::preset(p).unwrap())
        .collect();
    let all_metrics: Vec<_> = all.iter().flat_map(|s| s.in_force(day)).collect();
    g.bench_function("engine all platforms", |b| {
        b.iter(|| compute_day(&msgs, &all_metrics, day, EngineOptions::default()))
    });
    g.bench_function("engine pdd with items", |b| {
        b.iter(|| compute_day(&msgs, &pdd_metrics, day, EngineOptions { keep_items: true }))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
