//! Stage 5: a bucket's build. Its rows (encoded, in input order) are moved
//! into shop order, de-duplicated (of the rows sharing shop_id, msg_id and
//! local day the first stays; null msg_ids are never duplicates), rid of the
//! rows whose peer is not a consumer, given integer codes for threads,
//! agents and sessions, and put in thread order: the engine's table. A large
//! shop goes through the `large_shop` module's hash partitions instead of
//! the row-by-row path here; both keep their rows through [`Emit`].

use polars::prelude::{InitHashMaps, PlHashMap, PlHashSet};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::model::{LoadStats, Messages, Sender, NONE};

use super::classify::NON_CONSUMER;
use super::clock::LocalClock;
use super::codec::{corrupt_spill, parse_row, Key, Row};
use super::large_shop::partitioned_shop;

/// One kept row of a bucket being built, as the thread sort moves it (32
/// bytes: its local day and time of day are given again from `ts` by the
/// read's clock when the columns are built).
#[derive(Clone, Copy)]
struct Rec {
    thread: u32,
    tie: u32,
    ts: i64,
    agent: u32,
    session: u32,
    sender: Sender,
    flags: u8,
}

const _: () = assert!(std::mem::size_of::<Rec>() == 32);

/// Whether a row's peer is not a consumer (such rows leave after
/// de-duplication, on both paths).
#[inline]
pub(super) fn non_consumer(flags: u8) -> bool {
    flags & NON_CONSUMER != 0
}

/// Where both paths of [`build`] put the rows they keep: the records, the
/// threads (their shop and buyer_id), the bucket's agent and session codes
/// and its rows per local day. Rows are kept in groups (a shop, or a hash
/// partition of a large shop) whose threads are all new to the group, and
/// each group is put in thread order as it closes.
pub(super) struct Emit<'a> {
    recs: Vec<Rec>,
    per_day: PlHashMap<i32, u64>,
    agents: PlHashMap<Key<'a>, u32>,
    agent_names: Vec<String>,
    sessions: PlHashMap<Key<'a>, u32>,
    has_session_column: bool,
    /// Per thread code: its shop's code and its buyer_id.
    shop_of_thread: Vec<u32>,
    buyer_names: Vec<String>,
    /// The first record and thread of the open group.
    group: (usize, u32),
    /// The grouping's scratch space, reused group after group.
    scratch: (Vec<Rec>, Vec<u32>),
}

impl<'a> Emit<'a> {
    fn new(rows: usize, has_session_column: bool) -> Emit<'a> {
        let mut agents = PlHashMap::new();
        agents.insert(Key(b""), 0);
        Emit {
            recs: Vec::with_capacity(rows),
            per_day: PlHashMap::new(),
            agents,
            agent_names: vec![String::new()],
            sessions: PlHashMap::new(),
            has_session_column,
            shop_of_thread: Vec::new(),
            buyer_names: Vec::new(),
            group: (0, 0),
            scratch: (Vec::new(), Vec::new()),
        }
    }

    /// A new thread, of shop `shop` and buyer `buyer`: its code.
    #[inline]
    pub(super) fn new_thread(&mut self, shop: u32, buyer: &[u8]) -> u32 {
        self.shop_of_thread.push(shop);
        self.buyer_names
            .push(String::from_utf8_lossy(buyer).into_owned());
        (self.buyer_names.len() - 1) as u32
    }

    /// Keeps row `r` (place `row` in shop order) in thread `thread`.
    #[inline]
    pub(super) fn push(&mut self, r: &Row<'a>, thread: u32, row: u32) {
        *self.per_day.entry(r.day).or_default() += 1;
        let agent = match r.agent {
            None => 0,
            Some(a) => {
                let names = &mut self.agent_names;
                *self.agents.entry(Key(a)).or_insert_with(|| {
                    names.push(String::from_utf8_lossy(a).into_owned());
                    (names.len() - 1) as u32
                })
            }
        };
        let session = match r.session {
            Some(s) if self.has_session_column => {
                let next = self.sessions.len() as u32;
                *self.sessions.entry(Key(s)).or_insert(next)
            }
            _ => NONE,
        };
        self.recs.push(Rec {
            thread,
            tie: (u32::from(r.sender != Sender::Buyer) << 31) | row,
            ts: r.ts,
            agent,
            session,
            sender: r.sender,
            flags: r.flags,
        });
    }

    /// What was kept (the hash tables, which borrow the rows, dropped).
    fn finish(self) -> Kept {
        Kept {
            recs: self.recs,
            per_day: self.per_day,
            agent_names: self.agent_names,
            shop_of_thread: self.shop_of_thread,
            buyer_names: self.buyer_names,
        }
    }

    /// Opens a group: the rows kept until [`Emit::close_group`] are in
    /// threads coded from now on.
    #[inline]
    pub(super) fn open_group(&mut self) {
        self.group = (self.recs.len(), self.buyer_names.len() as u32);
    }

    /// Puts the open group's rows in thread order.
    #[inline]
    pub(super) fn close_group(&mut self) {
        let (first_rec, first_thread) = self.group;
        group_by_thread(
            &mut self.recs[first_rec..],
            first_thread,
            self.buyer_names.len() - first_thread as usize,
            &mut self.scratch.0,
            &mut self.scratch.1,
        );
    }
}

/// What [`Emit`] kept, with nothing that borrows the rows' bytes.
struct Kept {
    recs: Vec<Rec>,
    per_day: PlHashMap<i32, u64>,
    agent_names: Vec<String>,
    shop_of_thread: Vec<u32>,
    buyer_names: Vec<String>,
}

/// Groups `recs`, whose threads are `t0 .. t0 + n`, by thread in code
/// order, stably (a counting sort through `scratch`). The rows of one shop
/// or one hash partition of a large shop are grouped as soon as they are
/// kept: their threads' codes are consecutive, so the bucket's rows end up
/// in thread order without a sort of the whole bucket (which wrote every
/// record again, at random, into a second copy).
fn group_by_thread(
    recs: &mut [Rec],
    t0: u32,
    n: usize,
    scratch: &mut Vec<Rec>,
    starts: &mut Vec<u32>,
) {
    if n <= 1 || recs.len() <= 1 {
        return;
    }
    starts.clear();
    starts.resize(n + 1, 0);
    for r in recs.iter() {
        starts[(r.thread - t0) as usize + 1] += 1;
    }
    for t in 1..starts.len() {
        starts[t] += starts[t - 1];
    }
    scratch.clear();
    scratch.extend_from_slice(recs);
    for r in scratch.iter() {
        let at = &mut starts[(r.thread - t0) as usize];
        recs[*at as usize] = *r;
        *at += 1;
    }
}

/// Turns a bucket's rows (encoded segments, in input order) into the
/// engine's table. The rows are first moved, bytes and all, into shop order
/// (stable: input order within a shop), so that everything after reads
/// memory in order and works on one shop's small hash tables at a time.
/// Then, per shop in input order: de-duplication (of the rows sharing
/// shop_id, msg_id and local day, the first stays; null msg_ids are never
/// duplicates), then the peer_kind filter, then integer codes for threads
/// (shop, buyer), agents ("" and null are 0) and sessions (null is
/// [`NONE`]); then the thread order. Codes only order the work: every
/// output is sorted by the strings. Also returns the rows kept per local
/// day. A shop of at least `partition_min` rows takes the large-shop path.
pub(super) fn build(
    segments: Vec<Vec<u8>>,
    has_session_column: bool,
    partition_min: usize,
    clock: &LocalClock,
) -> Result<(Messages, PlHashMap<i32, u64>)> {
    let mut stats = LoadStats::default();
    let shops = ShopOrder::of(segments)?;
    let rows_total: u64 = shops.rows.iter().sum();
    let mut out = Emit::new(rows_total as usize, has_session_column);
    keep_rows(&shops, partition_min, clock, &mut stats, &mut out)?;
    let Kept {
        mut recs,
        agent_names,
        per_day,
        shop_of_thread,
        buyer_names,
    } = out.finish();
    let ShopOrder {
        names: shop_names,
        region,
        ..
    } = shops;
    drop(region);
    let threads = thread_order(&mut recs, buyer_names.len());
    let m = Messages {
        shop_names,
        buyer_names,
        agent_names,
        has_session_column,
        threads,
        stats,
        ..columns(recs, &shop_of_thread, clock)
    };
    Ok((m, per_day))
}

/// A bucket's rows in shop order: shop `s`'s rows (in input order) are
/// `region[start[s]..start[s + 1]]`, `rows[s]` of them, and its id is
/// `names[s]`; shops are coded in input order.
struct ShopOrder {
    region: Vec<u8>,
    names: Vec<String>,
    rows: Vec<u64>,
    start: Vec<usize>,
}

/// Each row's length and shop code, in input order, and each shop's id,
/// rows and bytes.
struct RowIndex {
    row_len: Vec<u32>,
    row_shop: Vec<u32>,
    shop_names: Vec<String>,
    shop_rows: Vec<u64>,
    shop_bytes: Vec<u64>,
}

impl RowIndex {
    fn of(segments: &[Vec<u8>]) -> Result<RowIndex> {
        let approx_rows: usize = segments.iter().map(|s| s.len() / 32).sum();
        let mut ix = RowIndex {
            row_len: Vec::with_capacity(approx_rows),
            row_shop: Vec::with_capacity(approx_rows),
            shop_names: Vec::new(),
            shop_rows: Vec::new(),
            shop_bytes: Vec::new(),
        };
        let mut shops: PlHashMap<Key, u32> = PlHashMap::new();
        for bytes in segments {
            let mut p = 0usize;
            while p < bytes.len() {
                let at = p;
                let r = parse_row(bytes, &mut p, None)?;
                let len = u32::try_from(p - at).map_err(|_| corrupt_spill())?;
                let shop = match shops.get(&Key(r.shop)) {
                    Some(&c) => c,
                    None => {
                        let c = ix.shop_names.len() as u32;
                        shops.insert(Key(r.shop), c);
                        ix.shop_names
                            .push(String::from_utf8_lossy(r.shop).into_owned());
                        ix.shop_rows.push(0);
                        ix.shop_bytes.push(0);
                        c
                    }
                };
                ix.shop_rows[shop as usize] += 1;
                ix.shop_bytes[shop as usize] += len as u64;
                ix.row_len.push(len);
                ix.row_shop.push(shop);
            }
        }
        if ix.row_len.len() >= 1 << 31 {
            return Err(Error::BadData(
                "more than 2^31 rows in one shop bucket: lower --memory-budget".to_string(),
            ));
        }
        Ok(ix)
    }
}

impl ShopOrder {
    /// The rows' bytes in shop order (a stable counting sort), each segment
    /// freed once copied; rows already in shop order in one segment (a
    /// bucket of one shop, say) stay where they are.
    fn of(segments: Vec<Vec<u8>>) -> Result<ShopOrder> {
        let ix = RowIndex::of(&segments)?;
        let total: u64 = ix.shop_bytes.iter().sum();
        let mut start: Vec<usize> = Vec::with_capacity(ix.shop_bytes.len() + 1);
        let mut acc = 0usize;
        for &b in &ix.shop_bytes {
            start.push(acc);
            acc += b as usize;
        }
        start.push(acc);
        let in_order = segments.len() == 1 && ix.row_shop.windows(2).all(|w| w[0] <= w[1]);
        let region: Vec<u8> = if in_order {
            segments.into_iter().next().expect("one segment")
        } else {
            let mut region: Vec<u8> = Vec::with_capacity(total as usize);
            let spare = &mut region.spare_capacity_mut()[..total as usize];
            let mut next = start.clone();
            let mut k = 0usize;
            for bytes in segments {
                let mut p = 0usize;
                while p < bytes.len() {
                    let len = ix.row_len[k] as usize;
                    let at = &mut next[ix.row_shop[k] as usize];
                    let src = &bytes[p..p + len];
                    // SAFETY: MaybeUninit<u8> and u8 have the same layout.
                    let src: &[std::mem::MaybeUninit<u8>] =
                        unsafe { std::slice::from_raw_parts(src.as_ptr().cast(), src.len()) };
                    spare[*at..*at + len].copy_from_slice(src);
                    *at += len;
                    p += len;
                    k += 1;
                }
            }
            debug_assert!(next.iter().zip(&start[1..]).all(|(a, b)| a == b));
            // SAFETY: every byte 0..total was written once: shop s's rows
            // fill start[s]..start[s + 1] exactly.
            unsafe { region.set_len(total as usize) };
            region
        };
        debug_assert_eq!(region.len() as u64, total);
        Ok(ShopOrder {
            region,
            names: ix.shop_names,
            rows: ix.shop_rows,
            start,
        })
    }
}

/// Per shop, in input order: de-duplication, the peer filter, threads; the
/// kept rows go to `out`, a large shop's through [`partitioned_shop`].
fn keep_rows<'a>(
    shops: &'a ShopOrder,
    partition_min: usize,
    clock: &LocalClock,
    stats: &mut LoadStats,
    out: &mut Emit<'a>,
) -> Result<()> {
    let mut tables = SmallShopTables::default();
    let mut i = 0u32; // the row's place in shop order: input order within a shop
    for (shop, (&n, w)) in shops.rows.iter().zip(shops.start.windows(2)).enumerate() {
        let bytes = &shops.region[w[0]..w[1]];
        let n = n as usize;
        if n >= partition_min && u32::try_from(bytes.len()).is_ok() {
            // A large shop: its tables would not stay in cache.
            partitioned_shop(bytes, clock, n, i, shop as u32, stats, out)?;
        } else {
            small_shop(bytes, clock, n, i, shop as u32, &mut tables, stats, out)?;
        }
        i += n as u32;
    }
    Ok(())
}

/// The hash tables of [`small_shop`], kept from shop to shop.
#[derive(Default)]
struct SmallShopTables<'a> {
    /// (local day, msg_id) of the rows kept so far.
    seen: PlHashSet<(i32, Key<'a>)>,
    /// Thread code per buyer_id.
    threads_of: PlHashMap<Key<'a>, u32>,
}

/// De-duplicates and threads one shop's rows (`bytes`, `n` rows, the first
/// at place `row0` in shop order) row by row, into `out`.
#[allow(clippy::too_many_arguments)]
fn small_shop<'a>(
    bytes: &'a [u8],
    clock: &LocalClock,
    n: usize,
    row0: u32,
    shop: u32,
    tables: &mut SmallShopTables<'a>,
    stats: &mut LoadStats,
    out: &mut Emit<'a>,
) -> Result<()> {
    let SmallShopTables { seen, threads_of } = tables;
    // Tables sized for the shop: clearing one grown by a large shop would
    // cost its whole capacity, shop after shop; and growing a large shop's
    // table step by step re-hashes it from scattered keys.
    if seen.capacity() > 4 * n.max(256) {
        *seen = PlHashSet::default();
        *threads_of = PlHashMap::default();
    } else {
        seen.clear();
        threads_of.clear();
    }
    seen.reserve(n);
    threads_of.reserve(n / 8);
    out.open_group();
    let mut row = row0;
    let mut p = 0usize;
    while p < bytes.len() {
        let r = parse_row(bytes, &mut p, Some(clock))?;
        let i = row;
        row += 1;
        if let Some(msg) = r.msg {
            if !seen.insert((r.day, Key(msg))) {
                stats.duplicates += 1;
                continue;
            }
        }
        // Then rows whose peer is not a consumer leave everything.
        if non_consumer(r.flags) {
            stats.non_consumer += 1;
            continue;
        }
        let thread = *threads_of
            .entry(Key(r.buyer))
            .or_insert_with(|| out.new_thread(shop, r.buyer));
        out.push(&r, thread, i);
    }
    out.close_group();
    Ok(())
}

/// Thread order: thread, ts, buyer rows first, input order. The rows are
/// grouped by thread already (each shop's or partition's as it was kept,
/// and codes grow shop by shop): each thread's rows are sorted by (ts,
/// tie), as whole records. Returns each thread's rows, `(start, end)`.
fn thread_order(recs: &mut [Rec], threads: usize) -> Vec<(u32, u32)> {
    debug_assert!(recs.windows(2).all(|w| w[0].thread <= w[1].thread));
    let mut starts = vec![0u32; threads + 1];
    for r in recs.iter() {
        starts[r.thread as usize + 1] += 1;
    }
    for t in 1..starts.len() {
        starts[t] += starts[t - 1];
    }
    let threads: Vec<(u32, u32)> = starts.windows(2).map(|w| (w[0], w[1])).collect();
    drop(starts);
    let mut rest: &mut [Rec] = recs;
    let mut pieces: Vec<&mut [Rec]> = Vec::with_capacity(threads.len());
    for &(s, e) in &threads {
        let (piece, tail) = rest.split_at_mut((e - s) as usize);
        pieces.push(piece);
        rest = tail;
    }
    pieces
        .par_iter_mut()
        .with_min_len(256)
        .for_each(|p| p.sort_unstable_by_key(|r| (r.ts, r.tie)));
    threads
}

/// The engine's columns of the records, in one pass over them (not one
/// pass per column, which is much slower on a large shop); the names,
/// threads and stats are left empty, for the caller.
fn columns(recs: Vec<Rec>, shop_of_thread: &[u32], clock: &LocalClock) -> Messages {
    let n = recs.len();
    let mut shop = Vec::with_capacity(n);
    let mut buyer = Vec::with_capacity(n);
    let mut ts = Vec::with_capacity(n);
    let mut day = Vec::with_capacity(n);
    let mut tod = Vec::with_capacity(n);
    let mut sender = Vec::with_capacity(n);
    let mut flags = Vec::with_capacity(n);
    let mut agent = Vec::with_capacity(n);
    let mut session = Vec::with_capacity(n);
    for r in &recs {
        shop.push(shop_of_thread[r.thread as usize]);
        buyer.push(r.thread);
        ts.push(r.ts);
        let (d, t) = clock.day_tod(r.ts);
        day.push(d);
        tod.push(t);
        sender.push(r.sender);
        flags.push(r.flags & !NON_CONSUMER);
        agent.push(r.agent);
        session.push(r.session);
    }
    drop(recs);
    Messages {
        shop,
        buyer,
        ts,
        day,
        tod,
        sender,
        flags,
        agent,
        session,
        ..Messages::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::codec::encode_row;
    use super::super::large_shop::PARTITION_MIN_ROWS;
    use super::*;
    use crate::model::MS_PER_DAY;

    /// A table in canonical form, free of code order: per thread (by shop
    /// and buyer names), its rows in order with every field, agents by
    /// name and sessions by first appearance.
    type Canon = Vec<(
        String,
        String,
        Vec<(i64, i32, i32, Sender, u8, String, u32)>,
    )>;

    fn canon(m: &Messages) -> Canon {
        let mut threads: Vec<(String, String, Vec<usize>)> = m
            .threads
            .iter()
            .map(|&(s, e)| {
                let first = s as usize;
                (
                    m.shop_names[m.shop[first] as usize].clone(),
                    m.buyer_names[m.buyer[first] as usize].clone(),
                    (s as usize..e as usize).collect(),
                )
            })
            .collect();
        threads.sort();
        let mut sessions: PlHashMap<u32, u32> = PlHashMap::new();
        threads
            .into_iter()
            .map(|(shop, buyer, rows)| {
                let rows = rows
                    .into_iter()
                    .map(|i| {
                        let session = match m.session[i] {
                            NONE => NONE,
                            c => {
                                let next = sessions.len() as u32;
                                *sessions.entry(c).or_insert(next)
                            }
                        };
                        (
                            m.ts[i],
                            m.day[i],
                            m.tod[i],
                            m.sender[i],
                            m.flags[i],
                            m.agent_names[m.agent[i] as usize].clone(),
                            session,
                        )
                    })
                    .collect();
                (shop, buyer, rows)
            })
            .collect()
    }

    /// The partitioned path for large shops builds the same table, counts
    /// and rows per day as the row-by-row path, and one segment the same
    /// as several: on rows with duplicates
    /// (some with another buyer or another day), null msg_ids, peers that
    /// are not consumers, equal times, null and empty agents, and sessions.
    #[test]
    fn partitioned_shops_build_what_the_row_path_builds() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for case in 0..12 {
            // Every third case has one shop: its rows are in shop order.
            let shops = if case % 3 == 0 { 1 } else { 2 + next(3) };
            let rows = 500 + next(4000) as usize;
            let mut segments: Vec<Vec<u8>> = vec![Vec::new()];
            let mut msgs: Vec<String> = Vec::new();
            for _ in 0..rows {
                // Most rows in shop 0, which is the large one.
                let shop = format!("s{}", if next(4) == 0 { next(shops) } else { 0 });
                let buyer = format!("b{}", next(60 + case * 40));
                let msg = match next(10) {
                    0 => None,
                    1 | 2 if !msgs.is_empty() => {
                        Some(msgs[next(msgs.len() as u64) as usize].clone())
                    }
                    _ => {
                        msgs.push(format!("m{}", msgs.len()));
                        msgs.last().cloned()
                    }
                };
                let agent = match next(4) {
                    0 => None,
                    1 => Some(String::new()),
                    _ => Some(format!("a{}", next(7))),
                };
                let session = (next(3) != 0).then(|| format!("x{}", next(90)));
                // Six minutes on each of two local days (msg_ids repeat
                // within a day and across them).
                let ts = 1_715_800_000_000 + next(2) as i64 * MS_PER_DAY + next(6) as i64 * 60_000;
                let flags = (next(16) as u8) | if next(9) == 0 { NON_CONSUMER } else { 0 };
                let vals = [
                    Some(shop.as_str()),
                    Some(buyer.as_str()),
                    msg.as_deref(),
                    agent.as_deref(),
                    session.as_deref(),
                ];
                if next(300) == 0 {
                    segments.push(Vec::new());
                }
                let seg = segments.last_mut().expect("one");
                encode_row(seg, ts, next(4) as u8, flags, &vals);
            }
            let clock = LocalClock::new(
                chrono_tz::Asia::Shanghai,
                1_715_700_000_000,
                1_716_000_000_000,
            );
            let build = |segments, has_session_column, partition_min| {
                build(segments, has_session_column, partition_min, &clock)
            };
            for has_session_column in [false, true] {
                let (a, a_days) = build(segments.clone(), has_session_column, usize::MAX).unwrap();
                let (b, b_days) = build(segments.clone(), has_session_column, 0).unwrap();
                assert_eq!(canon(&a), canon(&b), "case {case}");
                assert_eq!(a_days, b_days, "case {case}");
                assert_eq!(a.stats.duplicates, b.stats.duplicates, "case {case}");
                assert_eq!(a.stats.non_consumer, b.stats.non_consumer, "case {case}");
                assert_eq!(a.threads.len(), b.threads.len(), "case {case}");
                // And in one segment (kept as it is when in shop order).
                let one = vec![segments.concat()];
                let (c, c_days) = build(one, has_session_column, PARTITION_MIN_ROWS).unwrap();
                assert_eq!(canon(&a), canon(&c), "case {case}");
                assert_eq!(a_days, c_days, "case {case}");
                assert!(a.stats.duplicates > 0 && a.stats.non_consumer > 0);
            }
        }
    }
}
