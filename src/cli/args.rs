//! The command line as clap sees it: subcommands, flags, their help text and
//! the parsers of flag values. Nothing here reads a file or knows a preset;
//! `resolve` turns these into library configuration.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "kefu",
    version,
    about = "Customer-service metrics (Pinduoduo, Taobao, Douyin, JD, Kuaishou, Xiaohongshu) from Parquet chat logs",
    long_about = "kefu reads a Parquet table of e-commerce chat messages and writes the customer-service \
metrics the platforms grade shops on, per shop and per agent and day, as Hive-partitioned Parquet.\n\n\
Exit codes: 0 ok, 1 `rules diff` found differences, 2 usage, 65 bad input data, 66 input missing, 70 internal error (a bug), 75 I/O error (retry), 78 invalid rule file."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Compute one day (or a range of days) and write its partitions.
    Run(RunArgs),
    /// Validate a rule file (or the presets) and print the resolved rule table.
    Rules(RulesArgs),
    /// Write a deterministic synthetic message table (for trying kefu, tests, benches).
    Gen(GenArgs),
    /// Print a Spark SQL script computing shop_daily and shop_rolling for the days (warehouse scale).
    Sql(SqlArgs),
}

// The flags `run` and `sql` share, declared once. The help text is `run`'s;
// `SqlArgs` rewrites the lines whose meaning differs for a Spark script
// (paths as Spark sees them, one platform).
#[derive(Args, Debug)]
pub struct JobArgs {
    /// Input messages: a Parquet file, a directory (searched recursively,
    /// Hive `dt=` folders allowed) or a glob.
    #[arg(long, value_name = "PATH")]
    pub input: String,
    /// Output directory; tables go to DIR/<table>/platform=P/dt=D/.
    #[arg(long, value_name = "DIR")]
    pub output: PathBuf,
    /// The preset to use (pdd, taobao, douyin, jd, kuaishou, xiaohongshu); also
    /// the platform= partition name (with --rules, any name of [a-z0-9_-]).
    /// Several, comma-separated, or `all` for the six presets: the input is
    /// read once for all of them.
    #[arg(long, value_name = "NAME[,NAME...]")]
    pub platform: String,
    /// The (first) local day to compute, YYYY-MM-DD.
    #[arg(long, value_name = "D", value_parser = parse_date)]
    pub date: NaiveDate,
    /// Compute every day from --date to this one, inclusive, committing each in order.
    #[arg(long, value_name = "D2", value_parser = parse_date)]
    pub to: Option<NaiveDate>,
    /// A rule file replacing the presets (a file without [[metric]] keeps the
    /// presets and changes only the input settings).
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Compute every day with the rule versions in force on this date.
    #[arg(long, value_name = "D", value_parser = parse_date)]
    pub rules_as_of: Option<NaiveDate>,
    /// Fail on the first bad row instead of skipping it.
    #[arg(long)]
    pub strict: bool,
    /// Spark only (`kefu sql`, `--engine spark`): compile the reply metrics
    /// alone, leaving out the scorecard metrics in force, which are not
    /// compiled to Spark SQL (without it, kefu refuses to leave them out)
    #[arg(long)]
    pub skip_scorecard: bool,
}

#[derive(Args, Debug)]
#[command(
    mut_arg("input", |a| a.help(
        "Input messages as Spark reads them: a Parquet file, a flat or Hive-partitioned \
         directory, or a glob; a path or a URI (s3://, hdfs://)")),
    mut_arg("output", |a| a.help(
        "Output directory (path or URI); the script writes DIR/shop_daily/ and \
         DIR/shop_rolling/ (platform=P/dt=D/)")),
    mut_arg("platform", |a| a.value_name("NAME").help(
        "The preset to use; also the platform= partition name (with --rules, any name of [a-z0-9_-])")),
    // mut_arg moves the flag last: move --date after the others, so that the
    // usage line keeps the order of the flags' declaration.
    mut_arg("date", |a| a),
    mut_arg("to", |a| a.help("Compute every day from --date to this one, inclusive")),
    mut_arg("strict", |a| a.help(
        "Fail on any bad row (the script's bad-row check uses a share of 0)")),
)]
pub struct SqlArgs {
    #[command(flatten)]
    pub job: JobArgs,
}

#[derive(Args, Debug)]
pub struct GenArgs {
    /// Parquet file to write.
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    /// About how many rows (whole threads are generated).
    #[arg(long, default_value_t = 100_000)]
    pub rows: u64,
    /// Number of local days.
    #[arg(long, default_value_t = 1)]
    pub days: u32,
    /// Number of shops (traffic is skewed towards the first ones).
    #[arg(long, default_value_t = 50)]
    pub shops: u32,
    /// First local day (Asia/Shanghai), YYYY-MM-DD.
    #[arg(long, value_parser = parse_date, default_value = "2024-05-16")]
    pub start: NaiveDate,
    /// Random seed: the same arguments always give the same table.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Sort rows by time instead of shuffling them.
    #[arg(long)]
    pub sorted: bool,
    /// Parquet row-group size in rows.
    #[arg(long)]
    pub row_group_size: Option<usize>,
    /// Also write matching orders, refunds, complaints and ratings tables
    /// (SPEC §8.1) into this folder, for `kefu run --orders DIR/orders.parquet`
    /// and so on. The message table stays the one written without it.
    #[arg(long, value_name = "DIR")]
    pub scorecard: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub job: JobArgs,
    /// About how much memory a day may use, e.g. 512MiB, 4GiB: kefu computes
    /// the day in buckets of shops sized to it and spills rows waiting their
    /// turn to a hidden folder of --output. `0` holds each day whole.
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size)]
    pub memory_budget: u64,
    /// Worker threads (default: all cores). Never changes the output.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Do not write the items (per-item detail) table.
    #[arg(long)]
    pub no_items: bool,
    /// `native` (default) computes here; `spark` submits the Spark SQL of
    /// `kefu sql` (shop_daily and shop_rolling) to --spark-remote through Spark
    /// Connect (needs a kefu built with `--features spark-connect`).
    #[arg(long, value_enum, default_value_t = Engine::Native)]
    pub engine: Engine,
    /// The Spark Connect server for --engine spark, e.g. sc://spark-host:15002
    /// (default: the SPARK_REMOTE environment variable).
    #[arg(long, value_name = "URL")]
    pub spark_remote: Option<String>,
    /// Compute only the shops of shard I of N (a stable hash of shop_id), writing
    /// part-I-of-N files: N runs, on any machines, together write what one would.
    #[arg(long, value_name = "I/N", value_parser = kefu::shard::Shard::parse)]
    pub shard: Option<kefu::shard::Shard>,
    /// The orders table (file, directory or glob) for the scorecard's sales
    /// metrics (conversion, order value, items, dispute refunds).
    #[arg(long, value_name = "PATH")]
    pub orders: Option<String>,
    /// The refunds table, for the dispute refund rate and refund time.
    #[arg(long, value_name = "PATH")]
    pub refunds: Option<String>,
    /// The complaints table, for the complaint rate.
    #[arg(long, value_name = "PATH")]
    pub complaints: Option<String>,
    /// The ratings table, for the rating shares (satisfaction).
    #[arg(long, value_name = "PATH")]
    pub ratings: Option<String>,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RulesArgs {
    #[command(subcommand)]
    pub command: Option<RulesCommand>,
    /// The preset to show (default: all of them); several, comma-separated, or
    /// `all` as for `kefu run`.
    #[arg(long, value_name = "NAME")]
    pub platform: Option<String>,
    /// A rule file to validate and show instead of the presets.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Show what changed between two rule files (or preset names): input
    /// settings, metric versions added or removed, changed fields. Exits 0
    /// when there are none, 1 when they differ (as diff does).
    Diff {
        /// The old rules: a rule file, or a platform name for its presets.
        old: String,
        /// The new rules: a rule file, or a platform name for its presets.
        new: String,
    },
}

/// Where `kefu run` computes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Native,
    Spark,
}

fn parse_date(s: &str) -> std::result::Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("`{s}` is not a date like 2024-05-16"))
}

/// A size like `2GiB`, `512MiB`, `1.5G`, `800M`, `64K` or plain bytes
/// (K/M/G/T and KiB/MiB/GiB/TiB are both powers of 1024).
fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size like 2GiB or 512MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(format!("`{s}`: unknown unit (use KiB, MiB, GiB or TiB)")),
    };
    Ok((num * mult as f64) as u64)
}
