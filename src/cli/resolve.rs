//! Flags to library configuration: the rule set of `--platform` / `--rules`,
//! one [`RunConfig`] per platform of `kefu run`, the [`SparkJob`]s of
//! `kefu sql` and `--engine spark`. Every usage error clap cannot see is
//! found here, before anything is read or written.

use std::path::{Path, PathBuf};

use kefu::error::{Error, Result};
use kefu::job::RunConfig;
use kefu::rules::{RuleSet, PLATFORMS};
use kefu::spark::SparkJob;

use super::args::{Engine, GenArgs, JobArgs, RunArgs, SqlArgs};

impl SqlArgs {
    pub fn resolve(&self) -> Result<SparkJob> {
        let job = &self.job;
        let p = &job.platform;
        if p == "all" || p.contains(',') {
            return Err(Error::Usage(format!(
                "--platform {p}: sql takes one platform (Spark SQL is one script per \
                 platform); for several, run kefu sql once per platform"
            )));
        }
        check_platform(p)?;
        if job.rules.is_none() && !is_preset(p) {
            return Err(unknown_platform(p, false));
        }
        let to = job.to.unwrap_or(job.date);
        if to < job.date {
            return Err(Error::Usage(format!(
                "--to {to} is before --date {}",
                job.date
            )));
        }
        let mut rules = resolve_rules(Some(p), job.rules.as_ref())?;
        if job.strict {
            rules.input.max_bad_row_share = 0.0;
        }
        Ok(SparkJob {
            rules,
            platform: p.clone(),
            from: job.date,
            to,
            rules_as_of: job.rules_as_of,
            input: absolute_local(&job.input)?,
            output: absolute_local(&job.output.display().to_string())?,
            skip_scorecard: job.skip_scorecard,
        })
    }
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

impl RunArgs {
    /// For `--engine spark`: the Spark Connect URL and one Spark job per
    /// platform (flags that only the native engine has are refused, and so
    /// is a kefu built without Spark Connect, before anything is printed).
    pub fn resolve_spark(&self) -> Result<(String, Vec<SparkJob>)> {
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
        for (given, flag) in [
            (self.orders.is_some(), "--orders"),
            (self.refunds.is_some(), "--refunds"),
            (self.complaints.is_some(), "--complaints"),
            (self.ratings.is_some(), "--ratings"),
        ] {
            if given {
                return Err(Error::Usage(format!(
                    "{flag} applies to the native engine only (the scorecard is not compiled \
                     to Spark SQL): compute it with kefu run without --engine spark"
                )));
            }
        }
        let job = &self.job;
        let jobs = self
            .resolve()?
            .into_iter()
            .map(|c| {
                let mut rules = c.rules;
                if job.strict {
                    rules.input.max_bad_row_share = 0.0;
                }
                Ok(SparkJob {
                    rules,
                    platform: c.platform,
                    from: c.from,
                    to: c.to,
                    rules_as_of: c.rules_as_of,
                    input: absolute_local(&job.input)?,
                    output: absolute_local(&job.output.display().to_string())?,
                    skip_scorecard: job.skip_scorecard,
                })
            })
            .collect::<Result<_>>()?;
        if !cfg!(feature = "spark-connect") {
            // Built without the feature, `submit` does nothing but return the
            // usage error saying how to build it: return it now, before the
            // first "submitting" line.
            kefu::spark::connect::submit(&remote, "", &mut |_| {})?;
        }
        Ok((remote, jobs))
    }

    /// One configuration per platform of `--platform`.
    pub fn resolve(&self) -> Result<Vec<RunConfig>> {
        if self.spark_remote.is_some() && self.engine != Engine::Spark {
            return Err(Error::Usage("--spark-remote is for --engine spark".into()));
        }
        if self.job.skip_scorecard && self.engine != Engine::Spark {
            return Err(Error::Usage(
                "--skip-scorecard is for kefu sql and --engine spark (kefu run computes the \
                 scorecard metrics whose tables it is given and skips the others with a note)"
                    .into(),
            ));
        }
        if self.threads == Some(0) {
            return Err(Error::Usage("--threads must be at least 1".into()));
        }
        let job: &JobArgs = &self.job;
        let mut out: Vec<RunConfig> = Vec::new();
        for p in platform_names(&job.platform, job.rules.is_some(), true)? {
            out.push(RunConfig {
                input: job.input.clone(),
                output: job.output.clone(),
                rules: resolve_rules(Some(&p), job.rules.as_ref())?,
                platform: p,
                from: job.date,
                to: job.to.unwrap_or(job.date),
                rules_as_of: job.rules_as_of,
                strict: job.strict,
                write_items: !self.no_items,
                shard: self.shard.unwrap_or(kefu::shard::Shard::WHOLE),
                memory_budget: (self.memory_budget > 0).then_some(self.memory_budget),
                tables: kefu::job::TablePaths {
                    orders: self.orders.clone(),
                    refunds: self.refunds.clone(),
                    complaints: self.complaints.clone(),
                    ratings: self.ratings.clone(),
                },
            });
        }
        Ok(out)
    }
}

/// The platforms of a `--platform` value: one name, several comma-separated,
/// or `all` for the six presets. Each is checked as a partition name; without
/// a rule file each must be a preset, and no name may come twice.
/// `check_names` is false for `kefu rules`, which writes no partition.
pub fn platform_names(spec: &str, with_rules: bool, check_names: bool) -> Result<Vec<String>> {
    let names: Vec<String> = if spec == "all" {
        PLATFORMS.iter().map(|(p, _)| p.to_string()).collect()
    } else {
        spec.split(',').map(|p| p.trim().to_string()).collect()
    };
    for (k, p) in names.iter().enumerate() {
        if check_names {
            check_platform(p)?;
        }
        if !with_rules && !is_preset(p) {
            return Err(unknown_platform(p, true));
        }
        if names[..k].contains(p) {
            return Err(Error::Usage(format!("--platform names {p} twice")));
        }
    }
    Ok(names)
}

fn is_preset(p: &str) -> bool {
    PLATFORMS.iter().any(|(n, _)| *n == p)
}

/// The usage error of a `--platform` name that is no preset (and no rule
/// file was given to name a platform of one's own).
fn unknown_platform(p: &str, all_applies: bool) -> Error {
    let names = PLATFORMS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ");
    let all = if all_applies {
        ", or `all` for the six"
    } else {
        ""
    };
    Error::Usage(format!(
        "--platform: unknown platform `{p}`; the presets are: {names}{all} \
         (with --rules FILE, any name of [a-z0-9_-] names FILE's platform)"
    ))
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

/// A local path made absolute (Spark resolves relative paths against its own
/// working or warehouse directory); URIs (`scheme://...`) are kept as given.
fn absolute_local(p: &str) -> Result<String> {
    if p.contains("://") {
        return Ok(p.to_string());
    }
    let abs = std::path::absolute(p).map_err(|e| Error::Usage(format!("{p}: {e}")))?;
    Ok(abs.display().to_string())
}

/// A rule file path, or a preset's platform name (`kefu rules diff`).
pub fn load_rules_arg(arg: &str) -> Result<RuleSet> {
    let path = Path::new(arg);
    if !path.exists() && is_preset(arg) {
        return Ok(RuleSet::preset(arg)?);
    }
    Ok(RuleSet::from_file(path, None)?)
}

/// The rule set of `--platform` / `--rules`: the preset, the rule file, or
/// the rule file's input settings over the preset's metrics. A name that is
/// no preset must have been refused (or come with a rule file) before.
pub fn resolve_rules(platform: Option<&str>, rules: Option<&PathBuf>) -> Result<RuleSet> {
    let preset = match platform {
        Some(p) if is_preset(p) => Some(RuleSet::preset(p)?),
        Some(p) if rules.is_none() => return Err(unknown_platform(p, true)),
        _ => None,
    };
    match rules {
        Some(path) => Ok(RuleSet::from_file(path, preset.as_ref())?),
        None => Ok(preset.expect("a preset when no rule file is given")),
    }
}

/// A rule file read on its own, without presets (`kefu rules --rules FILE`):
/// a file holding only input settings (no `[[metric]]`) comes back with no
/// metrics instead of being refused.
pub fn rules_file_alone(path: &Path) -> Result<RuleSet> {
    let no_presets = RuleSet {
        source: String::new(),
        input: Default::default(),
        metrics: Vec::new(),
    };
    Ok(RuleSet::from_file(path, Some(&no_presets))?)
}
