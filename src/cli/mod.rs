//! The binary's side of kefu: flags (`args`), their resolution into library
//! configuration (`resolve`), what a run reports on stderr (`report`) and
//! writing results to stdout (`stdout`). The library never sees clap types.

mod args;
mod report;
mod resolve;
mod stdout;

use std::io::Write;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

use kefu::error::{Error, Result};
use kefu::rules::{render_table, RuleSet, PLATFORMS};

pub use args::Cli;
use args::{Command, Engine, RulesArgs, RulesCommand};
use stdout::with_stdout;

/// The parsed command line. clap's own errors (unknown flag, bad value,
/// missing flag) get the `kefu: error:` prefix of every other error and
/// clap's exit code (2); `--help` and `--version` print as clap prints them.
pub fn parse() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                let text = e.to_string();
                let text = text.strip_prefix("error: ").unwrap_or(&text);
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "kefu: error: {text}");
                std::process::exit(e.exit_code())
            }
        },
    }
}

/// Runs the command. The exit code is 0, or 1 for `rules diff` finding
/// differences; errors carry their own (see `kefu::error`).
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Rules(args) => match &args.command {
            Some(RulesCommand::Diff { old, new }) => rules_diff(old, new),
            None => rules_show(&args).map(|()| ExitCode::SUCCESS),
        },
        Command::Sql(args) => {
            let job = args.resolve()?;
            let script = kefu::spark::script(&job)?;
            for note in kefu::spark::skipped(&job) {
                eprintln!("kefu: note: {note}");
            }
            with_stdout(|out| out.write_all(script.as_bytes()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Gen(args) => {
            let cfg = args.resolve();
            let Some(dir) = &args.scorecard else {
                let rows = kefu::gen::write(&cfg, &args.output)?;
                eprintln!("kefu: wrote {rows} rows to {}", args.output.display());
                return Ok(ExitCode::SUCCESS);
            };
            let (rows, tables) = kefu::gen::write_with_scorecard(&cfg, &args.output, dir)?;
            eprintln!("kefu: wrote {rows} rows to {}", args.output.display());
            for (name, n) in tables {
                eprintln!("kefu: wrote {n} rows to {}", dir.join(name).display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) if args.engine == Engine::Spark => {
            let (remote, jobs) = args.resolve_spark()?;
            report::run_spark(&remote, &jobs, &args.job.output)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => {
            let cfgs = args.resolve()?;
            if let Some(n) = args.threads {
                // Both pools: rayon's (the engine) and polars' (the reader).
                std::env::set_var("POLARS_MAX_THREADS", n.to_string());
                // The global pool is built once, here, before any parallel
                // work: a failure is kefu's fault (or the OS refusing
                // threads), not the user's.
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build_global()
                    .map_err(|e| Error::Internal(format!("--threads {n}: {e}")))?;
            }
            report::run_native(&cfgs)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `kefu rules diff OLD NEW`: the changes, exit 1 when there are any.
fn rules_diff(old: &str, new: &str) -> Result<ExitCode> {
    let (a, b) = (resolve::load_rules_arg(old)?, resolve::load_rules_arg(new)?);
    let changes = kefu::rules::diff(&a, &b);
    with_stdout(|out| {
        if changes.is_empty() {
            writeln!(out, "no differences between {} and {}", a.source, b.source)
        } else {
            writeln!(out, "--- {}\n+++ {}", a.source, b.source)?;
            changes.iter().try_for_each(|c| writeln!(out, "{c}"))
        }
    })?;
    Ok(if changes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `kefu rules [--platform NAME[,NAME...]|all] [--rules FILE]`: the resolved
/// rule tables, as `kefu run` would use them.
fn rules_show(args: &RulesArgs) -> Result<()> {
    let rules = args.rules.as_ref();
    let Some(spec) = args.platform.as_deref() else {
        if let Some(path) = rules {
            let set = resolve::rules_file_alone(path)?;
            let text = if set.metrics.is_empty() {
                input_only_table(&set, &path.display().to_string())?
            } else {
                render_table(&set)
            };
            return with_stdout(|out| out.write_all(text.as_bytes()));
        }
        // No flags: every preset, each table followed by a blank line.
        let sets = PLATFORMS
            .iter()
            .map(|(p, _)| RuleSet::preset(p))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        return with_stdout(|out| {
            sets.iter()
                .try_for_each(|s| writeln!(out, "{}", render_table(s)))
        });
    };
    let names = resolve::platform_names(spec, rules.is_some(), false)?;
    let sets = names
        .iter()
        .map(|p| resolve::resolve_rules(Some(p), rules))
        .collect::<Result<Vec<_>>>()?;
    with_stdout(|out| match sets.as_slice() {
        [one] => write!(out, "{}", render_table(one)),
        // Several: as `kefu rules` shows the presets.
        _ => sets
            .iter()
            .try_for_each(|s| writeln!(out, "{}", render_table(s))),
    })
}

/// The input settings of a rule file without `[[metric]]`, and what it does:
/// it keeps the presets of `--platform`.
fn input_only_table(set: &RuleSet, shown: &str) -> Result<String> {
    // `render_table` prints the input settings as `# ` lines above the
    // metric table (and not at all without metrics): render the file's
    // settings over one preset metric and keep those lines.
    let mut with_one = set.clone();
    with_one.metrics = RuleSet::preset(PLATFORMS[0].0)?.metrics[..1].to_vec();
    let mut text: String = render_table(&with_one)
        .lines()
        .take_while(|l| l.starts_with("# "))
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(&format!(
        "# no [[metric]] entries: this file changes only the input settings and keeps the \
         presets of --platform (`kefu rules --rules {shown} --platform NAME` shows them)\n"
    ));
    Ok(text)
}
