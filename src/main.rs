//! The `kefu` binary: parse flags, resolve them, run, map errors to exit codes
//! (the codes are documented on `kefu::Error`).

mod cli;

use std::process::ExitCode;

/// mimalloc keeps freed pages for reuse: with the system allocator, the large
/// short-lived buffers of a big day cost as much time in page faults as the
/// work itself.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    // No transparent huge pages: mimalloc asks for them (`madvise`) on
    // its arenas, and each first touch of a 2 MiB region then faults in
    // and zeroes a whole huge page; on the benchmark VMs that cost more
    // kernel time than the larger pages saved (figures in
    // benches/runs/2026-12-04-huge-pages-and-scorecard-items.md). mimalloc
    // reads its own switch (`MIMALLOC_ALLOW_THP`) before
    // `main`, so the process opts out instead; setting MIMALLOC_ALLOW_THP
    // in the environment leaves the choice to mimalloc.
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: a plain prctl on this process; failure (an old kernel)
        // only leaves huge pages on.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
    let cli = cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kefu: error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
