//! Test helpers: build message tables, write them as Parquet, run kefu (as a
//! library or through the binary), read its output back.

#![allow(dead_code)]

pub mod reference;
pub mod reference_scorecard;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{NaiveDate, NaiveDateTime, TimeZone as _};
use chrono_tz::Tz;
use polars::prelude::*;

pub use reference::Msg;

pub const SHANGHAI: Tz = chrono_tz::Asia::Shanghai;

/// UTC ms of a Shanghai local time "YYYY-MM-DD HH:MM:SS[.fff]".
pub fn at(local: &str) -> i64 {
    let fmt = if local.contains('.') {
        "%Y-%m-%d %H:%M:%S%.f"
    } else {
        "%Y-%m-%d %H:%M:%S"
    };
    let ndt = NaiveDateTime::parse_from_str(local, fmt).expect("a local time");
    SHANGHAI
        .from_local_datetime(&ndt)
        .single()
        .expect("unambiguous")
        .timestamp_millis()
}

pub fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("a date")
}

/// A message with defaults: shop `s1`, buyer `b1`, consumer, no flags.
pub fn msg(sender: &str, local: &str) -> Msg {
    Msg {
        shop: "s1".into(),
        buyer: "b1".into(),
        ts_ms: at(local),
        sender: sender.into(),
        msg_id: None,
        agent_id: None,
        auto: false,
        assist: false,
        spam: false,
        blocked: false,
        peer_kind: "consumer".into(),
        session_id: None,
    }
}

pub fn buyer(local: &str) -> Msg {
    msg("buyer", local)
}
pub fn agent(local: &str) -> Msg {
    let mut m = msg("agent", local);
    m.agent_id = Some("a1".into());
    m
}

/// Which optional columns a written file has.
#[derive(Clone, Copy, Debug)]
pub struct Columns {
    pub session_id: bool,
    /// Write `ts` as naive local time (in Shanghai) instead of UTC instants.
    pub naive_ts: bool,
    pub unit: TimeUnit,
}

impl Default for Columns {
    fn default() -> Self {
        Columns {
            session_id: false,
            naive_ts: false,
            unit: TimeUnit::Milliseconds,
        }
    }
}

/// Writes `msgs` as a Parquet message table.
pub fn write_messages(path: &Path, msgs: &[Msg], cols: Columns) {
    let ts: Vec<i64> = msgs
        .iter()
        .map(|m| {
            let v = if cols.naive_ts {
                let utc = chrono::DateTime::from_timestamp_millis(m.ts_ms).unwrap();
                utc.with_timezone(&SHANGHAI)
                    .naive_local()
                    .and_utc()
                    .timestamp_millis()
            } else {
                m.ts_ms
            };
            match cols.unit {
                TimeUnit::Milliseconds => v,
                TimeUnit::Microseconds => v * 1000,
                TimeUnit::Nanoseconds => v * 1_000_000,
            }
        })
        .collect();
    let tz = if cols.naive_ts {
        None
    } else {
        Some(polars::prelude::TimeZone::UTC)
    };
    let s = |f: &dyn Fn(&Msg) -> String| msgs.iter().map(f).collect::<Vec<_>>();
    let o = |f: &dyn Fn(&Msg) -> Option<String>| msgs.iter().map(f).collect::<Vec<_>>();
    let b = |f: &dyn Fn(&Msg) -> bool| msgs.iter().map(f).collect::<Vec<_>>();
    let mut columns = vec![
        Column::new("shop_id".into(), s(&|m| m.shop.clone())),
        Column::new("buyer_id".into(), s(&|m| m.buyer.clone())),
        Column::new("ts".into(), ts)
            .cast(&DataType::Datetime(cols.unit, tz))
            .unwrap(),
        Column::new("sender".into(), s(&|m| m.sender.clone())),
        Column::new("msg_id".into(), o(&|m| m.msg_id.clone())),
        Column::new("agent_id".into(), o(&|m| m.agent_id.clone())),
        Column::new("auto".into(), b(&|m| m.auto)),
        Column::new("assist".into(), b(&|m| m.assist)),
        Column::new("spam".into(), b(&|m| m.spam)),
        Column::new("blocked".into(), b(&|m| m.blocked)),
        Column::new("peer_kind".into(), s(&|m| m.peer_kind.clone())),
    ];
    if cols.session_id {
        columns.push(Column::new(
            "session_id".into(),
            o(&|m| m.session_id.clone()),
        ));
    }
    let mut df = DataFrame::new_infer_height(columns).unwrap();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    let mut f = std::fs::File::create(path).unwrap();
    ParquetWriter::new(&mut f).finish(&mut df).unwrap();
}

/// Reads a Parquet file into a DataFrame.
pub fn read_parquet(path: &Path) -> DataFrame {
    let path = path.to_str().unwrap();
    LazyFrame::scan_parquet(PlRefPath::new(path), Default::default())
        .unwrap()
        .collect()
        .unwrap()
}

/// (shop_id, metric) → (numerator, denominator, value, rule_version) of a
/// `shop_daily` partition; empty when the partition has no rows.
pub type ShopRows = BTreeMap<(String, String), (i64, i64, f64, String)>;

pub fn read_shop_daily(out: &Path, platform: &str, day: NaiveDate) -> ShopRows {
    let p = out.join(format!(
        "shop_daily/platform={platform}/dt={day}/part-0.parquet"
    ));
    assert!(p.exists(), "missing partition {}", p.display());
    let df = read_parquet(&p);
    let shop = df.column("shop_id").unwrap().str().unwrap().clone();
    let metric = df.column("metric").unwrap().str().unwrap().clone();
    let num = df.column("numerator").unwrap().i64().unwrap().clone();
    let den = df.column("denominator").unwrap().i64().unwrap().clone();
    let val = df.column("value").unwrap().f64().unwrap().clone();
    let ver = df.column("rule_version").unwrap().str().unwrap().clone();
    (0..df.height())
        .map(|i| {
            (
                (
                    shop.get(i).unwrap().to_string(),
                    metric.get(i).unwrap().to_string(),
                ),
                (
                    num.get(i).unwrap(),
                    den.get(i).unwrap(),
                    val.get(i).unwrap(),
                    ver.get(i).unwrap().to_string(),
                ),
            )
        })
        .collect()
}

/// (shop_id, agent_id, metric) → (numerator, denominator) of `agent_daily`.
pub fn read_agent_daily(
    out: &Path,
    platform: &str,
    day: NaiveDate,
) -> BTreeMap<(String, String, String), (i64, i64)> {
    let p = out.join(format!(
        "agent_daily/platform={platform}/dt={day}/part-0.parquet"
    ));
    let df = read_parquet(&p);
    let c = |n: &str| df.column(n).unwrap().clone();
    let (shop, agent, metric, num, den) = (
        c("shop_id"),
        c("agent_id"),
        c("metric"),
        c("numerator"),
        c("denominator"),
    );
    (0..df.height())
        .map(|i| {
            (
                (
                    shop.str().unwrap().get(i).unwrap().to_string(),
                    agent.str().unwrap().get(i).unwrap().to_string(),
                    metric.str().unwrap().get(i).unwrap().to_string(),
                ),
                (
                    num.i64().unwrap().get(i).unwrap(),
                    den.i64().unwrap().get(i).unwrap(),
                ),
            )
        })
        .collect()
}

/// The built binary.
pub fn kefu_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kefu"))
}

/// Runs `kefu run` through the binary; panics with its stderr on failure.
pub fn run_bin(args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(kefu_bin())
        .args(args)
        .output()
        .expect("kefu runs");
    assert!(
        out.status.success(),
        "kefu {:?} failed ({:?}):\n{}",
        args,
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Writes `msgs`, runs `platform`'s presets (or `rules`) for `day` through
/// the library, and returns the `shop_daily` rows.
pub fn run_day(msgs: &[Msg], platform: &str, rules: Option<&str>, day: NaiveDate) -> ShopRows {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in/messages.parquet");
    write_messages(&input, msgs, Columns::default());
    let out = dir.path().join("out");
    run_lib(&input, &out, platform, rules, day, day);
    read_shop_daily(&out, platform, day)
}

pub fn run_lib(
    input: &Path,
    out: &Path,
    platform: &str,
    rules: Option<&str>,
    from: NaiveDate,
    to: NaiveDate,
) {
    let set = match rules {
        None => kefu::rules::RuleSet::preset(platform).unwrap(),
        Some(text) => kefu::rules::parse(text, "test.toml").unwrap(),
    };
    let cfg = kefu::job::RunConfig {
        input: input.to_str().unwrap().to_string(),
        output: out.to_path_buf(),
        platform: platform.to_string(),
        rules: set,
        from,
        to,
        rules_as_of: None,
        strict: false,
        write_items: true,
        shard: kefu::shard::Shard::WHOLE,
        memory_budget: None,
        tables: Default::default(),
    };
    kefu::job::run(&cfg, &mut |_| {}).unwrap();
}

/// Counts of one metric for one shop, or None when there is no row.
pub fn counts(rows: &ShopRows, shop: &str, metric: &str) -> Option<(i64, i64)> {
    rows.get(&(shop.to_string(), metric.to_string()))
        .map(|r| (r.0, r.1))
}

/// A test that cannot run on this machine: says why on stderr and returns,
/// except under CI (the `CI` environment variable set), where a test that
/// did not run is a failure, not a pass.
pub fn cannot_run_here(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("cannot run under CI: {why}");
    }
    eprintln!("SKIPPED (not a pass; fails when CI is set): {why}");
}

/// The part of a run's stderr a user acts on: from kefu's `kefu: error:` line
/// on (the lines before it are progress, with timings), or all of it for a
/// usage error (clap's, which has no progress before it). `root`, a
/// temporary folder, is shown as `[TMP]` so that the text is the same on
/// every run.
pub fn error_paragraph(stderr: &[u8], root: &Path) -> String {
    let text = String::from_utf8_lossy(stderr);
    let from = text.find("kefu: error: ").unwrap_or(0);
    let root = root.to_str().unwrap();
    without_pids(&text[from..].trim_end().replace(root, "[TMP]"))
}

/// `.part-0.parquet.13944.tmp` -> `.part-0.parquet.[PID].tmp`: staging files
/// carry the writer's process id.
fn without_pids(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(end) = rest.find(".tmp") {
        let head = &rest[..end];
        let digits = head.len() - head.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 && head[..head.len() - digits].ends_with('.') {
            out.push_str(&head[..head.len() - digits]);
            out.push_str("[PID]");
        } else {
            out.push_str(head);
        }
        out.push_str(".tmp");
        rest = &rest[end + 4..];
    }
    out.push_str(rest);
    out
}

/// A table of error cases for one snapshot: `case -> exit code -> message`.
pub struct ErrorTable {
    root: PathBuf,
    text: String,
}

impl ErrorTable {
    /// `root`: the temporary folder the cases' paths are under.
    pub fn new(root: &Path) -> ErrorTable {
        ErrorTable {
            root: root.to_path_buf(),
            text: String::new(),
        }
    }

    pub fn add(&mut self, case: &str, out: &std::process::Output) {
        use std::fmt::Write as _;
        let code = out
            .status
            .code()
            .map_or("killed".to_string(), |c| c.to_string());
        let message = error_paragraph(&out.stderr, &self.root);
        let _ = writeln!(self.text, "== {case} -> exit {code}");
        for line in message.lines() {
            let _ = writeln!(self.text, "   {line}");
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

/// Which rows of a table to keep (a row as its values, in column order).
pub type RowFilter<'a> = Option<&'a dyn Fn(&[AnyValue]) -> bool>;

/// Every row of a Parquet file as one line of values (strings quoted,
/// floats in full: shortest round-trip form), sorted, under a header naming
/// the columns and their types. `keep`: only the rows it accepts (`None`: all).
pub fn sorted_rows(path: &Path, keep: RowFilter) -> String {
    let df = read_parquet(path);
    let header = df
        .columns()
        .iter()
        .map(|c| format!("{}: {}", c.name(), c.dtype()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut rows: Vec<String> = (0..df.height())
        .map(|i| df.get_row(i).unwrap().0)
        .filter(|row| keep.is_none_or(|k| k(row)))
        .map(|row| {
            row.iter()
                .map(|v| match v {
                    AnyValue::Float64(x) => format!("{x:?}"),
                    v => v.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect();
    rows.sort();
    format!("{} rows; {header}\n{}\n", rows.len(), rows.join("\n"))
}
