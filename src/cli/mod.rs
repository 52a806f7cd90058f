//! Command-line flags (clap) and their resolution into library configuration.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};

use kefu::error::{Error, Result};
use kefu::job::RunConfig;
use kefu::rules::{RuleSet, PLATFORMS};

#[derive(Parser, Debug)]
#[command(
    name = "kefu",
    version,
    about = "Customer-service metrics (Pinduoduo, Taobao, Douyin, JD, Kuaishou, Xiaohongshu) from Parquet chat logs",
    long_about = "kefu reads a Parquet table of e-commerce chat messages and writes the customer-service \
metrics the platforms grade shops on, per shop and per agent and day, as Hive-partitioned Parquet.\n\n\
Exit codes: 0 ok, 2 usage, 65 bad input data, 66 input missing, 70 internal error (a bug), 75 I/O error (retry), 78 invalid rule file."
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

#[derive(Args, Debug)]
pub struct SqlArgs {
    /// Input messages as Spark reads them: a Parquet file, a flat or
    /// Hive-partitioned directory, or a glob; a path or a URI (s3://, hdfs://).
    #[arg(long, value_name = "PATH")]
    pub input: String,
    /// Output directory (path or URI); the script writes DIR/shop_daily/ and DIR/shop_rolling/ (platform=P/dt=D/).
    #[arg(long, value_name = "DIR")]
    pub output: String,
    /// The preset to use; also the platform= partition name (with --rules, any name of [a-z0-9_-]).
    #[arg(long, value_name = "NAME")]
    pub platform: String,
    /// The (first) local day to compute, YYYY-MM-DD.
    #[arg(long, value_name = "D", value_parser = parse_date)]
    pub date: NaiveDate,
    /// Compute every day from --date to this one, inclusive.
    #[arg(long, value_name = "D2", value_parser = parse_date)]
    pub to: Option<NaiveDate>,
    /// A rule file replacing the presets (a file without [[metric]] keeps the
    /// presets and changes only the input settings).
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Compute every day with the rule versions in force on this date.
    #[arg(long, value_name = "D", value_parser = parse_date)]
    pub rules_as_of: Option<NaiveDate>,
    /// Fail on any bad row (the script's bad-row check uses a share of 0).
    #[arg(long)]
    pub strict: bool,
}

impl SqlArgs {
    pub fn resolve(&self) -> Result<kefu::spark::SparkJob> {
        check_platform(&self.platform)?;
        let to = self.to.unwrap_or(self.date);
        if to < self.date {
            return Err(Error::Usage(format!(
                "--to {to} is before --date {}",
                self.date
            )));
        }
        let mut rules = resolve_rules(Some(&self.platform), self.rules.as_ref())?;
        if self.strict {
            rules.input.max_bad_row_share = 0.0;
        }
        Ok(kefu::spark::SparkJob {
            rules,
            platform: self.platform.clone(),
            from: self.date,
            to,
            rules_as_of: self.rules_as_of,
            input: absolute_local(&self.input)?,
            output: absolute_local(&self.output)?,
        })
    }
}

/// A local path made absolute (Spark resolves relative paths against its own
/// working or warehouse directory); URIs (`scheme://...`) are kept as given.
fn absolute_local(p: &str) -> Result<String> {
    if p.contains("://") {
        return Ok(p.to_string());
    }
    let abs = std::path::absolute(p).map_err(|e| Error::Usage(format!("{p}: {e}")))?;
    Ok(abs.display().to_string())
}

/// `--platform` names the platform= partition: 1-64 characters of a-z, 0-9, _ and -.
fn check_platform(p: &str) -> Result<()> {
    if p.is_empty()
        || p.len() > 64
        || !p
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(Error::Usage(format!(
            "--platform `{p}` must be 1-64 characters of a-z, 0-9, _ and - (it names the platform= partition)"
        )));
    }
    Ok(())
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
}

impl GenArgs {
    pub fn resolve(&self) -> kefu::gen::GenConfig {
        kefu::gen::GenConfig {
            seed: self.seed,
            rows: self.rows,
            days: self.days,
            shops: self.shops,
            start: self.start,
            shuffled: !self.sorted,
            row_group_size: self.row_group_size,
        }
    }
}

#[derive(Args, Debug)]
pub struct RunArgs {
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
    /// About how much memory a day may use, e.g. 512MiB, 4GiB: kefu computes
    /// the day in buckets of shops sized to it and spills rows waiting their
    /// turn to a hidden folder of --output. `0` holds each day whole.
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size)]
    pub memory_budget: u64,
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
    /// Worker threads (default: all cores). Never changes the output.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Fail on the first bad row instead of skipping it.
    #[arg(long)]
    pub strict: bool,
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
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RulesArgs {
    #[command(subcommand)]
    pub command: Option<RulesCommand>,
    /// The preset to show (default: all of them).
    #[arg(long, value_name = "NAME")]
    pub platform: Option<String>,
    /// A rule file to validate and show instead of the presets.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Show what changed between two rule files (or preset names): input
    /// settings, metric versions added or removed, changed fields.
    Diff {
        /// The old rules: a rule file, or a platform name for its presets.
        old: String,
        /// The new rules: a rule file, or a platform name for its presets.
        new: String,
    },
}

/// A rule file path, or a preset's platform name.
pub fn load_rules_arg(arg: &str) -> Result<RuleSet> {
    let path = std::path::Path::new(arg);
    if !path.exists() && PLATFORMS.iter().any(|(p, _)| *p == arg) {
        return Ok(RuleSet::preset(arg)?);
    }
    Ok(RuleSet::from_file(path, None)?)
}

fn parse_date(s: &str) -> std::result::Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("`{s}` is not a date like 2024-05-16"))
}

/// The rule set of `--platform` / `--rules`.
pub fn resolve_rules(platform: Option<&str>, rules: Option<&PathBuf>) -> Result<RuleSet> {
    let preset = match platform {
        Some(p) if PLATFORMS.iter().any(|(n, _)| *n == p) => Some(RuleSet::preset(p)?),
        Some(p) if rules.is_none() => {
            return Err(RuleSet::preset(p).expect_err("unknown platform").into())
        }
        _ => None,
    };
    match rules {
        Some(path) => Ok(RuleSet::from_file(path, preset.as_ref())?),
        None => Ok(preset.expect("a preset when no rule file is given")),
    }
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

/// Where `kefu run` computes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Native,
    Spark,
}

impl RunArgs {
    /// For `--engine spark`: the Spark Connect URL and one Spark job per
    /// platform (flags that only the native engine has are refused).
    pub fn resolve_spark(&self) -> Result<(String, Vec<kefu::spark::SparkJob>)> {
        let remote = self
            .spark_remote
            .clone()
            .or_else(|| std::env::var("SPARK_REMOTE").ok())
            .ok_or_else(|| {
                Error::Usage(
                    "--engine spark needs --spark-remote sc://HOST:PORT (or SPARK_REMOTE)".into(),
                )
            })?;
        kefu::spark::connect::host_port(&remote)?;
        for (given, flag) in [
            (self.threads.is_some(), "--threads"),
            (self.shard.is_some(), "--shard"),
        ] {
            if given {
                return Err(Error::Usage(format!(
                    "{flag} applies to the native engine only (Spark sizes its own work)"
                )));
            }
        }
        let jobs = self
            .resolve()?
            .into_iter()
            .map(|c| {
                let mut rules = c.rules;
                if self.strict {
                    rules.input.max_bad_row_share = 0.0;
                }
                Ok(kefu::spark::SparkJob {
                    rules,
                    platform: c.platform,
                    from: c.from,
                    to: c.to,
                    rules_as_of: c.rules_as_of,
                    input: absolute_local(&self.input)?,
                    output: absolute_local(&self.output.display().to_string())?,
                })
            })
            .collect::<Result<_>>()?;
        Ok((remote, jobs))
    }

    /// One configuration per platform of `--platform`.
    pub fn resolve(&self) -> Result<Vec<RunConfig>> {
        if self.spark_remote.is_some() && self.engine != Engine::Spark {
            return Err(Error::Usage("--spark-remote is for --engine spark".into()));
        }
        if self.threads == Some(0) {
            return Err(Error::Usage("--threads must be at least 1".into()));
        }
        let names: Vec<String> = if self.platform == "all" {
            PLATFORMS.iter().map(|(p, _)| p.to_string()).collect()
        } else {
            self.platform
                .split(',')
                .map(|p| p.trim().to_string())
                .collect()
        };
        let mut out: Vec<RunConfig> = Vec::new();
        for p in names {
            check_platform(&p)?;
            if out.iter().any(|c| c.platform == p) {
                return Err(Error::Usage(format!("--platform names {p} twice")));
            }
            out.push(RunConfig {
                input: self.input.clone(),
                output: self.output.clone(),
                rules: resolve_rules(Some(&p), self.rules.as_ref())?,
                platform: p,
                from: self.date,
                to: self.to.unwrap_or(self.date),
                rules_as_of: self.rules_as_of,
                strict: self.strict,
                write_items: !self.no_items,
                shard: self.shard.unwrap_or(kefu::shard::Shard::WHOLE),
                memory_budget: (self.memory_budget > 0).then_some(self.memory_budget),
            });
        }
        Ok(out)
    }
}
