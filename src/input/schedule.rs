//! Shop buckets on the cores: the order in which workers take a day's
//! buckets (the largest first, see [`WorkOrder`]), the read-ahead of spilled
//! buckets, and results handed on in bucket order.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::input;

/// The order in which [`schedule_buckets`]' workers take the buckets,
/// decided place by place when a place is first wanted (by the worker that
/// claims it, or by the thread reading spilled buckets one ahead). The
/// largest bucket comes first. When results may wait in any order (no
/// `ahead` limit, or one that every bucket fits in), the buckets taken
/// while the largest is being built are the smallest, and after it the
/// largest left: building a bucket needs memory the process has not
/// touched before only beyond what it has already freed, and on the
/// benchmark VM a first touch is costly (BENCHMARKS.md). Built beside the
/// largest shop's bucket, the second largest took fresh memory too (and
/// was many times slower a row than the others); after it, it reuses the
/// largest's. Taking the largest left once the largest is done ends the
/// day on small buckets, so that the workers finish together. With a
/// limit, the order is the buckets' own (results are added in that order,
/// and a worker more than `ahead` buckets ahead of them waits).
struct WorkOrder {
    placed: Vec<usize>,
    /// The buckets not placed yet: smallest first, or in bucket order.
    left: std::collections::VecDeque<usize>,
    free: bool,
}

impl WorkOrder {
    fn new(rows: &[u64], largest: usize, free: bool) -> WorkOrder {
        let mut left: Vec<usize> = (0..rows.len()).filter(|&k| k != largest).collect();
        if free {
            left.sort_by_key(|&k| (rows[k], k));
        }
        WorkOrder {
            placed: if rows.is_empty() {
                Vec::new()
            } else {
                vec![largest]
            },
            left: left.into(),
            free,
        }
    }

    /// The bucket at place `i`, placing the ones before it if need be.
    fn at(&mut self, i: usize, largest_busy: bool) -> Option<usize> {
        while self.placed.len() <= i {
            let k = if !self.free || largest_busy {
                self.left.pop_front()
            } else {
                self.left.pop_back()
            }?;
            self.placed.push(k);
        }
        Some(self.placed[i])
    }
}

/// Builds and computes every bucket of `loaded` on one worker per core,
/// each taking the next bucket as it becomes free, and hands the results to
/// `add` in bucket order (`compute` gets the bucket's number, for
/// [`input::Loaded::bucket_shops`]). The largest bucket (the one holding the day's
/// largest shop, often several times the others) is taken first, so that
/// the other workers go through the rest meanwhile (in the order of
/// [`WorkOrder`]). Apart from it, workers
/// run at most `ahead` buckets ahead of `add` (`None`: no limit), which
/// bounds the results waiting for their turn. The first error stops the
/// work.
///
/// When the read spilled past the page cache, buckets after the largest are
/// taken from `loaded`, and spilled ones read back from disk, by one more
/// thread, in the workers' order and at most one bucket ahead of them: the
/// workers are busy on the CPU and the disk is not, so the reads (seconds
/// of the workers' time at scale, when each read its own bucket) overlap
/// the builds. The bucket read ahead is the only extra memory. A
/// panic in a bucket's work, or in `add`, becomes an error (see `caught`).
pub fn schedule_buckets<P: Send>(
    loaded: &mut input::Loaded,
    ahead: Option<usize>,
    compute: &(dyn Fn(usize, &crate::model::Messages) -> Result<P> + Sync),
    mut add: impl FnMut(P) -> Result<()>,
) -> Result<()> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{mpsc, Condvar, Mutex};
    let n = loaded.buckets();
    let workers = input::MemoryPlan::parallel_buckets().min(n).max(1);
    let window = ahead.unwrap_or(n).max(workers);
    let rows: Vec<u64> = (0..n).map(|k| loaded.bucket_rows(k)).collect();
    let largest = (0..n)
        .max_by_key(|&k| (rows[k], std::cmp::Reverse(k)))
        .unwrap_or(0);
    let order = Mutex::new(WorkOrder::new(&rows, largest, window >= n));
    // Until the largest bucket is built and computed.
    let largest_busy = AtomicBool::new(true);
    let next = AtomicUsize::new(0);
    // (buckets added, stop)
    let gate = (Mutex::new((0usize, false)), Condvar::new());
    // Buckets taken (and read back) by the reader, by place in `order`, and
    // whether the reader is done (`next` counts the places claimed).
    type Ready = (BTreeMap<usize, Result<input::BucketRows>>, bool);
    let ready: (Mutex<Ready>, Condvar) = (Mutex::new((BTreeMap::new(), false)), Condvar::new());
    let shared = Mutex::new(loaded);
    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }
    // A panic in a bucket's work, or in adding the results, becomes an
    // error: left to end its thread, it would leave the others waiting for
    // its result or its notice, and the run would hang instead of failing.
    // (The panic's message is printed as it happens.)
    fn caught<T>(what: impl FnOnce() -> String, work: impl FnOnce() -> Result<T>) -> Result<T> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(Error::Internal(format!(
                "{} failed (a bug: please report it): {why}",
                what()
            )))
        })
    }
    let stop = |gate: &(Mutex<(usize, bool)>, Condvar), ready: &(Mutex<Ready>, Condvar)| {
        lock(&gate.0).1 = true;
        gate.1.notify_all();
        // Under the lock, so that no waiter misses it between its check and
        // its wait.
        let _r = lock(&ready.0);
        ready.1.notify_all();
    };
    // Only a spill past the page cache waits on the disk; one through it
    // reads back at memory speed, and a reader thread would only add
    // memory, for no speed.
    let read_ahead = matches!(lock(&shared).spilled(), Some((_, true)));
    let at = |i: usize| lock(&order).at(i, largest_busy.load(Ordering::SeqCst));
    let at = &at;
    std::thread::scope(|scope| {
        if read_ahead {
            let (next, gate, shared, ready) = (&next, &gate, &shared, &ready);
            scope.spawn(move || {
                // The largest bucket is taken by its worker (its rows are
                // normally still in memory: see `BucketStore::spill_if_over`;
                // if it was spilled after all, it and the next are read at
                // once, not one after the other).
                for i in 1.. {
                    // At most one bucket ahead of those the workers claimed.
                    {
                        let mut r = lock(&ready.0);
                        while i > next.load(Ordering::SeqCst) && !lock(&gate.0).1 {
                            r = ready.1.wait(r).unwrap_or_else(|e| e.into_inner());
                        }
                    }
                    if lock(&gate.0).1 {
                        break;
                    }
                    // Placed now, one ahead of the workers (see `WorkOrder`).
                    let Some(k) = at(i) else { break };
                    let rows = caught(
                        || format!("shop bucket {k}"),
                        || {
                            lock(shared).take(k).and_then(|mut rows| {
                                rows.read_back()?;
                                Ok(rows)
                            })
                        },
                    );
                    let mut r = lock(&ready.0);
                    r.0.insert(i, rows);
                    ready.1.notify_all();
                }
                lock(&ready.0).1 = true;
                ready.1.notify_all();
            });
        }
        // A result waits for its turn as counts and tables, without the
        // bucket's rows.
        type Done<P> = Result<(input::BucketCounts, P)>;
        let (tx, rx) = mpsc::channel::<(usize, Done<P>)>();
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, gate, shared, ready) = (&next, &gate, &shared, &ready);
            let largest_busy = &largest_busy;
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                // The reader may go on to the bucket after this one (told
                // under the lock: see `stop`).
                if read_ahead {
                    let _r = lock(&ready.0);
                    ready.1.notify_all();
                }
                let Some(k) = at(i) else { break };
                {
                    let mut g = lock(&gate.0);
                    while !g.1 && k != largest && k >= g.0 + window {
                        g = gate.1.wait(g).unwrap_or_else(|e| e.into_inner());
                    }
                    if g.1 {
                        break;
                    }
                }
                let rows = if i == 0 || !read_ahead {
                    Some(lock(shared).take(k))
                } else {
                    let mut r = lock(&ready.0);
                    loop {
                        if let Some(rows) = r.0.remove(&i) {
                            break Some(rows);
                        }
                        if r.1 || lock(&gate.0).1 {
                            break None;
                        }
                        r = ready.1.wait(r).unwrap_or_else(|e| e.into_inner());
                    }
                };
                let Some(rows) = rows else { break };
                let result = caught(
                    || format!("shop bucket {k}"),
                    || {
                        rows.and_then(|r| r.build()).and_then(|built| {
                            let (messages, counts) = built.split();
                            let parts = compute(k, &messages)?;
                            Ok((counts, parts))
                        })
                    },
                );
                if i == 0 {
                    largest_busy.store(false, Ordering::SeqCst);
                }
                if tx.send((k, result)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut pending: BTreeMap<usize, Done<P>> = BTreeMap::new();
        let mut want = 0usize;
        let outcome = caught(
            || "adding the shop buckets' tables".into(),
            || {
                for (k, result) in rx.iter() {
                    pending.insert(k, result);
                    while let Some(result) = pending.remove(&want) {
                        result.and_then(|(counts, parts)| {
                            lock(&shared).absorb(counts);
                            add(parts)
                        })?;
                        want += 1;
                        lock(&gate.0).0 = want;
                        gate.1.notify_all();
                    }
                }
                Ok(())
            },
        );
        if outcome.is_err() || want < n {
            stop(&gate, &ready);
        }
        outcome
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::DayRange;
    use chrono::NaiveDate;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A day of `kefu gen` rows read with a 64 KiB budget: dozens of
    /// buckets, spilled past the page cache (on the disk's file system).
    fn spilled_day(dir: &std::path::Path) -> input::Loaded {
        let file = dir.join("day.parquet");
        let day = NaiveDate::from_ymd_opt(2024, 5, 16).unwrap();
        crate::gen::write(
            &crate::gen::GenConfig {
                seed: 7,
                rows: 20_000,
                days: 1,
                shops: 40,
                start: day,
                shuffled: true,
                row_group_size: None,
            },
            &file,
        )
        .unwrap();
        let plan = input::MemoryPlan::from_budget(64 << 10, Some(dir.join("spill")));
        let loaded = input::scan(
            &[file],
            &crate::rules::InputSettings::default(),
            DayRange {
                first: day,
                last: day.succ_opt().unwrap(),
            },
            false,
            crate::shard::Shard::WHOLE,
            &plan,
            input::ScanOptions::default(),
        )
        .unwrap();
        assert!(loaded.buckets() > 4, "{} buckets", loaded.buckets());
        loaded
    }

    /// Runs `schedule_buckets` on its own thread, failing the test if it
    /// has not returned within two minutes; the error's exit code and
    /// message.
    fn schedule_error(
        dir: std::path::PathBuf,
        before: impl FnOnce(&std::path::Path) + Send + 'static,
        fail_on_call: usize,
        add_fails_on_call: usize,
    ) -> (i32, String) {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut loaded = spilled_day(&dir);
            before(&dir);
            let calls = AtomicUsize::new(0);
            let compute = |_: usize, _: &crate::model::Messages| -> Result<()> {
                if calls.fetch_add(1, Ordering::SeqCst) == fail_on_call {
                    panic!("injected");
                }
                Ok(())
            };
            let mut added = 0;
            let add = |()| {
                added += 1;
                if added == add_fails_on_call {
                    panic!("injected in add");
                }
                Ok(())
            };
            let result = schedule_buckets(&mut loaded, Some(2), &compute, add);
            let _ = tx.send(result.map_err(|e| (e.exit_code(), e.to_string())));
        });
        rx.recv_timeout(std::time::Duration::from_secs(120))
            .expect("the run hung")
            .expect_err("the run succeeded")
    }

    /// A panic in one bucket's work ends the run with an internal error
    /// naming the bucket, instead of leaving the other workers, the reader
    /// and the merge waiting for its result for ever. The spill goes past
    /// the page cache here (a 64 KiB budget on the disk), so the reader
    /// thread runs, and the window keeps workers near the merge.
    #[test]
    fn a_panicking_bucket_fails_the_run_instead_of_hanging_it() {
        let dir = tempfile::tempdir().unwrap();
        let (code, message) = schedule_error(dir.path().to_path_buf(), |_| {}, 1, usize::MAX);
        assert_eq!(code, 70, "{message}");
        assert!(
            message.contains("shop bucket") && message.contains("injected"),
            "{message}"
        );
        // The same when adding a bucket's results panics (on the calling
        // thread, while workers wait at the window).
        let dir = tempfile::tempdir().unwrap();
        let (code, message) = schedule_error(dir.path().to_path_buf(), |_| {}, usize::MAX, 2);
        assert_eq!(code, 70, "{message}");
        assert!(
            message.contains("adding") && message.contains("injected in add"),
            "{message}"
        );
    }

    /// The work order: the largest first; while it is busy, the smallest
    /// (ties in bucket order); once it is done, the largest left. With a
    /// window, bucket order.
    #[test]
    fn work_order_takes_small_buckets_beside_the_largest() {
        let rows = [5, 1, 9, 3, 7, 1, 4];
        let mut o = WorkOrder::new(&rows, 2, true);
        assert_eq!(o.at(0, true), Some(2));
        assert_eq!(o.at(2, true), Some(5)); // places 1 and 2: buckets 1, 5
        assert_eq!(o.at(1, false), Some(1)); // placed already
        assert_eq!(o.at(3, false), Some(4));
        assert_eq!(o.at(4, true), Some(3)); // a smallest again
        assert_eq!(o.at(6, false), Some(6)); // places 5 and 6: 0, then 6
        assert_eq!(o.placed, [2, 1, 5, 4, 3, 0, 6]);
        assert_eq!(o.at(7, false), None);
        let mut o = WorkOrder::new(&rows, 2, false);
        assert_eq!(o.at(6, false), Some(6));
        assert_eq!(o.placed, [2, 0, 1, 3, 4, 5, 6]);
        assert_eq!(WorkOrder::new(&[], 0, true).at(0, true), None);
    }

    /// Whatever order the workers take the buckets in, every bucket is
    /// built once and `add` gets the results in bucket order: the same
    /// sequence without a window (the dynamic order) as with one.
    #[test]
    fn results_are_added_in_bucket_order_whatever_the_work_order() {
        let added = |ahead: Option<usize>| {
            let dir = tempfile::tempdir().unwrap();
            let mut loaded = spilled_day(dir.path());
            let shops: Vec<(Option<String>, Option<String>)> = (0..loaded.buckets())
                .map(|k| {
                    let (from, until) = loaded.bucket_shops(k);
                    (from.map(str::to_string), until.map(str::to_string))
                })
                .collect();
            let compute = |k: usize, m: &crate::model::Messages| -> Result<(Vec<String>, usize)> {
                // Every shop of the bucket lies in its range.
                let (from, until) = &shops[k];
                for s in &m.shop_names {
                    assert!(from.as_ref().is_none_or(|f| s >= f), "{s} below bucket {k}");
                    assert!(until.as_ref().is_none_or(|u| s < u), "{s} above bucket {k}");
                }
                Ok((m.shop_names.clone(), m.len()))
            };
            let mut out = Vec::new();
            schedule_buckets(&mut loaded, ahead, &compute, |r| {
                out.push(r);
                Ok(())
            })
            .unwrap();
            (out, loaded.buckets())
        };
        let (free, n) = added(None);
        let (windowed, _) = added(Some(2));
        assert_eq!(free.len(), n);
        assert_eq!(free, windowed);
        // Buckets are shop ranges in order: each bucket's shops come after
        // the previous bucket's.
        let ranges: Vec<(&String, &String)> = free
            .iter()
            .filter(|(s, _)| !s.is_empty())
            .map(|(s, _)| (s.iter().min().unwrap(), s.iter().max().unwrap()))
            .collect();
        assert!(ranges.len() > 4);
        assert!(ranges.windows(2).all(|w| w[0].1 < w[1].0), "{ranges:?}");
    }

    /// A spill file that cannot be read back (gone here) stops the run with
    /// an I/O error naming it, whether the reader thread or a worker reads
    /// it.
    #[test]
    fn an_unreadable_spill_file_fails_the_run_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let remove = |dir: &std::path::Path| {
            for f in std::fs::read_dir(dir.join("spill")).unwrap() {
                std::fs::remove_file(f.unwrap().path()).unwrap();
            }
        };
        let (code, message) =
            schedule_error(dir.path().to_path_buf(), remove, usize::MAX, usize::MAX);
        assert_eq!(code, 75, "{message}");
        assert!(
            message.contains("cannot read spill file") && message.contains("bucket-"),
            "{message}"
        );
    }
}
