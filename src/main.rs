//! The `kefu` binary: parse flags, resolve them, run, map errors to exit codes.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

/// mimalloc keeps freed pages for reuse: with the system allocator, the large
/// short-lived buffers of a big day cost as much time in page faults as the
/// work itself.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use kefu::job::Event;

fn main() -> ExitCode {
    // Keep freed memory for reuse instead of returning it to the OS after
    // 10 ms: a day's shop buckets allocate and free the same large buffers
    // one after another, and on VMs the kernel's zeroing of returned-then-
    // retouched pages cost as much as the work. Peak memory is unchanged.
    // SAFETY: called before any other thread exists; 15 is
    // `mi_option_purge_delay` in mimalloc v2 and v3 (-1: never purge).
    // MIMALLOC_PURGE_DELAY in the environment still wins.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        unsafe { libmimalloc_sys::mi_option_set(15, -1) };
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kefu: error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn run(cli: Cli) -> kefu::Result<()> {
    match cli.command {
        Command::Rules(args) => {
            if let Some(cli::RulesCommand::Diff { old, new }) = &args.command {
                let (a, b) = (cli::load_rules_arg(old)?, cli::load_rules_arg(new)?);
                let changes = kefu::rules::diff(&a, &b);
                if changes.is_empty() {
                    println!("no differences between {} and {}", a.source, b.source);
                } else {
                    println!("--- {}\n+++ {}", a.source, b.source);
                    for c in changes {
                        println!("{c}");
                    }
                }
                return Ok(());
            }
            if args.platform.is_none() && args.rules.is_none() {
                for (p, _) in kefu::rules::PLATFORMS {
                    println!(
                        "{}",
                        kefu::rules::render_table(&kefu::rules::RuleSet::preset(p)?)
                    );
                }
            } else {
                let set = cli::resolve_rules(args.platform.as_deref(), args.rules.as_ref())?;
                print!("{}", kefu::rules::render_table(&set));
            }
            Ok(())
        }
        Command::Sql(args) => {
            print!("{}", kefu::spark::script(&args.resolve()?)?);
            Ok(())
        }
        Command::Gen(args) => {
            let cfg = args.resolve();
            let rows = kefu::gen::write(&cfg, &args.output)?;
            eprintln!("kefu: wrote {rows} rows to {}", args.output.display());
            Ok(())
        }
        Command::Run(args) if args.engine == cli::Engine::Spark => {
            let (remote, jobs) = args.resolve_spark()?;
            let started = std::time::Instant::now();
            for job in &jobs {
                let script = kefu::spark::script(job)?;
                eprintln!(
                    "kefu: {}: submitting {} .. {} to {remote}",
                    job.platform, job.from, job.to
                );
                kefu::spark::connect::submit(&remote, &script, &mut |l| eprintln!("kefu: {l}"))?;
            }
            eprintln!(
                "kefu: done: {} platform(s) on Spark, output in {}, {:.2}s",
                jobs.len(),
                args.output.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Run(args) => {
            let cfgs = args.resolve()?;
            if let Some(n) = args.threads {
                // Both pools: rayon's (the engine) and polars' (the reader).
                std::env::set_var("POLARS_MAX_THREADS", n.to_string());
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build_global()
                    .map_err(|e| kefu::Error::Usage(format!("--threads {n}: {e}")))?;
            }
            let started = std::time::Instant::now();
            let days = if std::io::stderr().is_terminal() {
                let bar = indicatif::ProgressBar::new(0).with_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:30} {pos}/{len} days {msg} [{elapsed}]",
                    )
                    .expect("a valid template"),
                );
                let result = kefu::job::run_all(&cfgs, &mut |event| match event {
                    Event::DayStarted { total, day, .. } => {
                        bar.set_length(total as u64);
                        bar.set_message(day.to_string());
                    }
                    Event::Line(line) => bar.println(line),
                    Event::DayDone(_) => bar.inc(1),
                });
                bar.finish_and_clear();
                result?
            } else {
                kefu::job::run_all(&cfgs, &mut |event| {
                    if let Event::Line(line) = event {
                        eprintln!("kefu: {line}");
                    }
                })?
            };
            // Rows are read once per day for all platforms: count one platform's.
            let first = &days.first().map(|d| d.platform.clone()).unwrap_or_default();
            let days_read = days.iter().filter(|d| &d.platform == first);
            let rows: u64 = days_read.clone().map(|d| d.rows_read).sum();
            let bad: u64 = days_read.map(|d| d.bad_rows).sum();
            let platforms = cfgs.len();
            eprintln!(
                "kefu: done: {} day(s){}, {rows} rows read, {bad} bad, output in {}, {:.2}s",
                days.iter()
                    .map(|d| d.day)
                    .collect::<std::collections::BTreeSet<_>>()
                    .len(),
                if platforms > 1 {
                    format!(" x {platforms} platforms")
                } else {
                    String::new()
                },
                cfgs[0].output.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
    }
}
