//! Stage 5 for a large shop: de-duplication and threads in hash
//! partitions, so that every hash table stays in the core's cache. Gives
//! what the row-by-row path of [`build`](super::threads::build) gives.

use crate::error::Result;
use crate::model::LoadStats;

use super::clock::LocalClock;
use super::codec::{corrupt_spill, parse_row, Key, Row};
use super::threads::{non_consumer, Emit};

/// A shop with at least this many rows in a bucket is de-duplicated and
/// threaded in hash partitions ([`partitioned_shop`]).
pub(super) const PARTITION_MIN_ROWS: usize = 1 << 14;

/// About this many rows per hash partition, so that a partition's table
/// stays in the core's cache.
const PARTITION_ROWS: usize = 1 << 13;

/// Asks the CPU to start loading the cache line at `p` (a hint: never
/// faults, whatever `p` is).
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint; it reads nothing and cannot fault.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p.cast::<i8>(), std::arch::x86_64::_MM_HINT_T0)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// A row of a large shop in its hash partition: the hash, the row's place
/// in shop order and where its bytes start.
#[derive(Clone, Copy)]
struct Part {
    hash: u64,
    row: u32,
    at: u32,
}

/// The rows `j` for which `keep(j)`, with `hash[j]` and `off[j]`, grouped by
/// hash partition (`bits` bits of the hash, away from the bits the tables
/// use), in ascending order within a partition; with the partitions'
/// starts.
fn partition_rows(
    hash: &[u64],
    off: &[u32],
    keep: impl Fn(usize) -> bool,
    bits: u32,
) -> (Vec<Part>, Vec<usize>) {
    let part = |h: u64| ((h >> 32) as usize) & ((1usize << bits) - 1);
    let mut starts = vec![0usize; (1 << bits) + 1];
    for (j, &h) in hash.iter().enumerate() {
        if keep(j) {
            starts[part(h) + 1] += 1;
        }
    }
    for k in 1..starts.len() {
        starts[k] += starts[k - 1];
    }
    let total = starts[1 << bits];
    let mut out: Vec<Part> = Vec::with_capacity(total);
    {
        let spare = &mut out.spare_capacity_mut()[..total];
        let mut next = starts.clone();
        for (j, &h) in hash.iter().enumerate() {
            if keep(j) {
                let at = &mut next[part(h)];
                spare[*at].write(Part {
                    hash: h,
                    row: j as u32,
                    at: off[j],
                });
                *at += 1;
            }
        }
    }
    // SAFETY: each of the `total` kept rows was written to its own slot of
    // its partition's range, and the ranges tile 0..total.
    unsafe { out.set_len(total) };
    (out, starts)
}

/// De-duplicates and threads one large shop's rows (`bytes`, `n` rows, the
/// first at place `row0` in shop order), giving the same result as the
/// row-by-row path of [`build`](super::threads::build) but with every hash table small: the rows
/// are first grouped by a hash of (local day, msg_id), each group
/// de-duplicated in input order (so the first of equal rows stays), then
/// the rows kept are grouped by a hash of buyer_id and each group threaded.
/// A thread's rows all hash alike, so each group's threads are complete;
/// threads get their codes (in `out`, as shop `shop`'s) group by group
/// (codes only order the work).
#[allow(clippy::too_many_arguments)]
pub(super) fn partitioned_shop<'a>(
    bytes: &'a [u8],
    clock: &LocalClock,
    n: usize,
    row0: u32,
    shop: u32,
    stats: &mut LoadStats,
    out: &mut Emit<'a>,
) -> Result<()> {
    let Rows {
        off,
        mut kind,
        by_msg,
        by_buyer,
    } = index_rows(bytes, clock, n)?;
    // Every row at these places parsed above, so it parses again.
    let row_at = |at: u32| -> Row<'a> {
        let mut q = at as usize;
        parse_row(bytes, &mut q, Some(clock)).expect("a row that parsed before")
    };
    let bits = (n / PARTITION_ROWS)
        .max(2)
        .next_power_of_two()
        .trailing_zeros();
    dedupe(&by_msg, &off, &mut kind, bits, &row_at, stats);
    drop(by_msg);
    // Then rows whose peer is not a consumer leave everything.
    for k in kind.iter_mut() {
        if *k & (DROP | NOT_CONSUMER) == NOT_CONSUMER {
            stats.non_consumer += 1;
            *k |= DROP;
        }
    }
    let (rows, starts) = partition_rows(&by_buyer, &off, |j| kind[j] & DROP == 0, bits);
    drop((by_buyer, kind, off));
    thread_groups(bytes, &rows, &starts, row0, shop, &row_at, out);
    Ok(())
}

// A row's kind: bits of these.
const HAS_MSG: u8 = 1;
const DROP: u8 = 2;
const NOT_CONSUMER: u8 = 4;

/// The rows of a large shop, in shop order: where each starts, its kind
/// (bits of [`HAS_MSG`], [`DROP`], [`NOT_CONSUMER`]) and its hashes.
struct Rows {
    off: Vec<u32>,
    kind: Vec<u8>,
    /// Of (local day, msg_id); zero without a msg_id.
    by_msg: Vec<u64>,
    /// Of buyer_id.
    by_buyer: Vec<u64>,
}

/// Each row's place, kind and hashes, in shop order (`n` rows expected).
fn index_rows(bytes: &[u8], clock: &LocalClock, n: usize) -> Result<Rows> {
    use std::hash::BuildHasher;
    // Fixed, so that runs are reproducible.
    let hasher = foldhash::fast::FixedState::with_seed(0x6b65_6675);
    let mut off: Vec<u32> = Vec::with_capacity(n);
    let mut kind: Vec<u8> = Vec::with_capacity(n);
    let mut by_msg: Vec<u64> = Vec::with_capacity(n);
    let mut by_buyer: Vec<u64> = Vec::with_capacity(n);
    let mut p = 0usize;
    while p < bytes.len() {
        off.push(p as u32);
        let r = parse_row(bytes, &mut p, Some(clock))?;
        let mut k = 0u8;
        by_msg.push(match r.msg {
            Some(m) => {
                k |= HAS_MSG;
                hasher.hash_one((r.day, m))
            }
            None => 0,
        });
        if non_consumer(r.flags) {
            // Dropped after de-duplication, below.
            k |= NOT_CONSUMER;
        }
        kind.push(k);
        by_buyer.push(hasher.hash_one(r.buyer));
    }
    if off.len() != n {
        return Err(corrupt_spill());
    }
    Ok(Rows {
        off,
        kind,
        by_msg,
        by_buyer,
    })
}

/// De-duplication: of the rows sharing local day and msg_id, the first in
/// shop order stays; the others are marked [`DROP`] and counted.
fn dedupe<'a>(
    by_msg: &[u64],
    off: &[u32],
    kind: &mut [u8],
    bits: u32,
    row_at: &impl Fn(u32) -> Row<'a>,
    stats: &mut LoadStats,
) {
    {
        let (rows, starts) = partition_rows(by_msg, off, |j| kind[j] & HAS_MSG != 0, bits);
        let widest = starts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        let mut table: hashbrown::HashTable<(u64, u32)> =
            hashbrown::HashTable::with_capacity(widest);
        for w in starts.windows(2) {
            table.clear();
            for &Part {
                hash: h,
                row: j,
                at,
            } in &rows[w[0]..w[1]]
            {
                let found = table
                    .find(h, |&(eh, e_at)| {
                        eh == h && {
                            let (a, b) = (row_at(e_at), row_at(at));
                            a.day == b.day && a.msg == b.msg
                        }
                    })
                    .is_some();
                if found {
                    kind[j as usize] |= DROP;
                    stats.duplicates += 1;
                } else {
                    table.insert_unique(h, (h, at), |e| e.0);
                }
            }
        }
    }
}

/// Threads, hash partition by partition (`rows` grouped by a hash of
/// buyer_id, the partitions starting at `starts`); the rows go out to
/// `out` in partition order, each partition's grouped by thread.
fn thread_groups<'a>(
    bytes: &'a [u8],
    rows: &[Part],
    starts: &[usize],
    row0: u32,
    shop: u32,
    row_at: &impl Fn(u32) -> Row<'a>,
    out: &mut Emit<'a>,
) {
    let widest = starts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    // (hash, thread code, buyer_id's place and length in `bytes`)
    let mut table: hashbrown::HashTable<(u64, u32, u32, u32)> =
        hashbrown::HashTable::with_capacity(widest / 4);
    // Rows are read in hash order, so each is a cache miss: ask for the
    // row this far ahead while this one is worked on.
    const AHEAD: usize = 16;
    for w in starts.windows(2) {
        table.clear();
        out.open_group();
        let part = &rows[w[0]..w[1]];
        for (
            k,
            &Part {
                hash: h,
                row: j,
                at,
            },
        ) in part.iter().enumerate()
        {
            if let Some(ahead) = part.get(k + AHEAD) {
                let p = bytes.as_ptr().wrapping_add(ahead.at as usize);
                prefetch(p);
                prefetch(p.wrapping_add(63));
            }
            let r = row_at(at);
            let thread = match table.find(h, |&(eh, _, at, len)| {
                eh == h && Key(&bytes[at as usize..(at + len) as usize]) == Key(r.buyer)
            }) {
                Some(&(_, code, _, _)) => code,
                None => {
                    let code = out.new_thread(shop, r.buyer);
                    let at = r.buyer.as_ptr() as usize - bytes.as_ptr() as usize;
                    table.insert_unique(h, (h, code, at as u32, r.buyer.len() as u32), |e| e.0);
                    code
                }
            };
            out.push(&r, thread, row0 + j);
        }
        out.close_group();
    }
}
