//! The metrics engine: thread-ordered messages → items → per-shop and
//! per-agent counts, for one local day (SPEC §2–§3).
//!
//! The engine knows nothing of files or flags. It works on [`Messages`]
//! (sorted by thread, then time, buyer rows first, then input order) holding
//! at least the day's rows and the next day's (the reply horizon).
//!
//! The per-thread work that several metrics share is computed once per run:
//! for every responder set in use, the index of the next valid reply at or
//! after each row ([`NextIndex`]), and the next bot row for `bot_only`.
//! Rounds, sessions and items are then found by one pass per thread and
//! metric, threads in parallel. Every comparison and sum is in integer
//! milliseconds.

/// The engine's hash maps: foldhash, fast on small integer keys (every
/// output is sorted, so iteration order never shows).
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

use chrono::NaiveDate;
use rayon::prelude::*;

use crate::model::{day_number, flag, Messages, Sender, NONE};
use crate::rules::{Kind, Metric, Policy, Responders, Unit, Unreplied};

/// Why an item was left out of both sides of its metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Excluded {
    CrossDay,
    BotOnly,
    Unreplied,
}

impl Excluded {
    pub fn as_str(self) -> &'static str {
        match self {
            Excluded::CrossDay => "cross_day",
            Excluded::BotOnly => "bot_only",
            Excluded::Unreplied => "unreplied",
        }
    }
}

/// One counted or excluded item (a row of the `items` table).
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// Index into the day's metric list.
    pub metric: u16,
    pub shop: u32,
    pub buyer: u32,
    pub agent: u32,
    /// UTC ms of the item's start (its first inquiry).
    pub start: i64,
    /// UTC ms of the reply of the reported inquiry: the first failing one of
    /// an any-miss item, else the start.
    pub reply: Option<i64>,
    pub latency_ms: Option<i64>,
    /// What entered a mean-latency numerator.
    pub counted_ms: Option<i64>,
    /// Rates only, for counted items.
    pub passed: Option<bool>,
    pub excluded: Option<Excluded>,
}

/// Numerator and denominator of one metric for one group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub numerator: i64,
    pub denominator: i64,
}

/// Per-metric totals for the run summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricTotals {
    pub counted: u64,
    pub excluded: u64,
}

/// Options that change what the engine keeps, never what it computes.
#[derive(Clone, Copy, Debug, Default)]
pub struct EngineOptions {
    /// Keep every item for the `items` table.
    pub keep_items: bool,
}

/// The result of one day.
#[derive(Debug, Default)]
pub struct DayResult {
    /// (shop, agent, metric index) → counts; shop rows are their sums.
    pub by_agent: HashMap<(u32, u32, u16), Counts>,
    pub totals: Vec<MetricTotals>,
    /// In thread order, each thread's items in metric order (when kept).
    pub items: Vec<Item>,
}

impl DayResult {
    /// (shop, metric index) → counts, the sum of the agent rows.
    pub fn by_shop(&self) -> HashMap<(u32, u16), Counts> {
        let mut out: HashMap<(u32, u16), Counts> = HashMap::default();
        for (&(shop, _, m), c) in &self.by_agent {
            let e = out.entry((shop, m)).or_default();
            e.numerator += c.numerator;
            e.denominator += c.denominator;
        }
        out
    }
}

/// For each row, the index of the first row at or after it (within its
/// thread) that satisfies a predicate, or [`NONE`].
pub struct NextIndex(Vec<u32>);

impl NextIndex {
    fn build(m: &Messages, pred: impl Fn(usize) -> bool + Sync) -> NextIndex {
        let mut next = vec![NONE; m.len()];
        // Threads are disjoint row ranges: fill each from its end, in parallel.
        let mut slices: Vec<(usize, &mut [u32])> = Vec::with_capacity(m.threads.len());
        let mut rest: &mut [u32] = &mut next;
        let mut offset = 0usize;
        for &(s, e) in &m.threads {
            let (s, e) = (s as usize, e as usize);
            let (_, tail) = rest.split_at_mut(s - offset);
            let (mine, tail) = tail.split_at_mut(e - s);
            slices.push((s, mine));
            rest = tail;
            offset = e;
        }
        slices
            .into_par_iter()
            .with_min_len(256)
            .for_each(|(s, out)| {
                let mut nxt = NONE;
                for k in (0..out.len()).rev() {
                    if pred(s + k) {
                        nxt = (s + k) as u32;
                    }
                    out[k] = nxt;
                }
            });
        NextIndex(next)
    }

    #[inline]
    fn get(&self, i: usize) -> Option<usize> {
        let v = self.0[i];
        (v != NONE).then_some(v as usize)
    }
}

#[inline]
fn is_inquiry(m: &Messages, i: usize) -> bool {
    m.sender[i] == Sender::Buyer && m.flags[i] & (flag::AUTO | flag::SPAM | flag::BLOCKED) == 0
}

#[inline]
fn is_valid_reply(m: &Messages, i: usize, r: Responders) -> bool {
    match m.sender[i] {
        Sender::Agent => r.manual() && m.flags[i] & flag::AUTO == 0,
        Sender::Bot => r.assist() && m.flags[i] & flag::ASSIST != 0,
        _ => false,
    }
}

/// The work shared by every metric of a day: next-reply indices per
/// responder set and next-bot indices.
pub struct Shared {
    replies: Vec<(Responders, NextIndex)>,
    next_bot: Option<NextIndex>,
}

impl Shared {
    pub fn build(m: &Messages, metrics: &[&Metric]) -> Shared {
        let mut sets: Vec<Responders> = metrics.iter().map(|x| x.responders).collect();
        sets.sort();
        sets.dedup();
        let replies = sets
            .into_iter()
            .map(|r| (r, NextIndex::build(m, |i| is_valid_reply(m, i, r))))
            .collect();
        let next_bot = metrics
            .iter()
            .any(|x| x.bot_only == Policy::Exclude)
            .then(|| NextIndex::build(m, |i| m.sender[i] == Sender::Bot));
        Shared { replies, next_bot }
    }

    fn replies(&self, r: Responders) -> &NextIndex {
        &self
            .replies
            .iter()
            .find(|(s, _)| *s == r)
            .expect("built for every responder set")
            .1
    }
}

/// Computes `day` for `metrics` (the versions in force) over `m`.
pub fn compute_day(
    m: &Messages,
    metrics: &[&Metric],
    day: NaiveDate,
    opts: EngineOptions,
) -> DayResult {
    let shared = Shared::build(m, metrics);
    let d = day_number(day);
    let per_metric: Vec<MetricCtx> = metrics
        .iter()
        .enumerate()
        .map(|(k, metric)| MetricCtx {
            index: k as u16,
            metric,
            next_reply: shared.replies(metric.responders),
            next_bot: shared.next_bot.as_ref(),
        })
        .collect();

    let partial = m
        .threads
        .par_iter()
        .with_min_len(64)
        .fold(
            || Acc {
                totals: vec![MetricTotals::default(); metrics.len()],
                ..Default::default()
            },
            |mut acc, &(s, e)| {
                let (s, e) = (s as usize, e as usize);
                for ctx in &per_metric {
                    ctx.thread(m, s, e, d, &mut acc, opts.keep_items);
                }
                acc
            },
        )
        .collect::<Vec<Acc>>();

    let mut result = DayResult {
        totals: vec![MetricTotals::default(); metrics.len()],
        ..Default::default()
    };
    // The items' room at once: grown by doubling, a large shop's items were
    // copied at every step into memory never touched before, which on the
    // benchmark VM cost more than the engine's work (figures in
    // benches/runs/2026-12-02-bucket-order.md).
    result
        .items
        .reserve_exact(partial.iter().map(|a| a.items.len()).sum());
    for acc in partial {
        for (k, c) in acc.by_agent {
            let e = result.by_agent.entry(k).or_default();
            e.numerator += c.numerator;
            e.denominator += c.denominator;
        }
        for (t, a) in result.totals.iter_mut().zip(acc.totals.iter()) {
            t.counted += a.counted;
            t.excluded += a.excluded;
        }
        result.items.extend(acc.items);
    }
    // Counts with an empty denominator are not rows (SPEC §3).
    result.by_agent.retain(|_, c| c.denominator > 0);
    result
}

/// One platform's metrics for [`compute_days`], and whether it keeps items.
pub struct MetricSet<'a> {
    pub metrics: &'a [&'a Metric],
    pub keep_items: bool,
}

/// [`compute_day`] for several platforms' metric sets over the same rows,
/// in one pass: the threads are walked once for every distinct metric, and
/// metrics that find the same items (equal in every field that decides
/// them, see [`Metric::same_items`]) are computed once. Each set's result
/// is what [`compute_day`] gives for it, but for the order of items of
/// different metrics within a thread.
pub fn compute_days(m: &Messages, sets: &[MetricSet], day: NaiveDate) -> Vec<DayResult> {
    // The distinct metrics, and where each set's metrics are among them.
    let mut distinct: Vec<&Metric> = Vec::new();
    let at: Vec<Vec<u16>> = sets
        .iter()
        .map(|set| {
            set.metrics
                .iter()
                .map(|&metric| {
                    let u = match distinct.iter().position(|d| d.same_items(metric)) {
                        Some(u) => u,
                        None => {
                            distinct.push(metric);
                            distinct.len() - 1
                        }
                    };
                    u as u16
                })
                .collect()
        })
        .collect();
    let keep_items = sets.iter().any(|s| s.keep_items);
    let all = compute_day(m, &distinct, day, EngineOptions { keep_items });
    if let [set] = sets {
        if set.metrics.len() == distinct.len() {
            // One set of distinct metrics: the result is its own, as it is.
            return vec![all];
        }
    }
    sets.iter()
        .zip(&at)
        .map(|(set, at)| {
            // Distinct metric → this set's metrics computed by it.
            let mut mine: Vec<Vec<u16>> = vec![Vec::new(); distinct.len()];
            for (j, &u) in at.iter().enumerate() {
                mine[u as usize].push(j as u16);
            }
            let mut by_agent: HashMap<(u32, u32, u16), Counts> = HashMap::default();
            by_agent.reserve(all.by_agent.len() * at.len() / distinct.len().max(1));
            for (&(shop, agent, u), &c) in &all.by_agent {
                for &j in &mine[u as usize] {
                    by_agent.insert((shop, agent, j), c);
                }
            }
            let mut items = Vec::new();
            if set.keep_items {
                // At once, as in `compute_day`.
                items.reserve_exact(
                    all.items
                        .iter()
                        .map(|it| mine[it.metric as usize].len())
                        .sum(),
                );
                for it in &all.items {
                    for &j in &mine[it.metric as usize] {
                        items.push(Item {
                            metric: j,
                            ..it.clone()
                        });
                    }
                }
            }
            DayResult {
                by_agent,
                totals: at.iter().map(|&u| all.totals[u as usize]).collect(),
                items,
            }
        })
        .collect()
}

#[derive(Default)]
struct Acc {
    by_agent: HashMap<(u32, u32, u16), Counts>,
    totals: Vec<MetricTotals>,
    items: Vec<Item>,
}

struct MetricCtx<'a> {
    index: u16,
    metric: &'a Metric,
    next_reply: &'a NextIndex,
    next_bot: Option<&'a NextIndex>,
}

impl MetricCtx<'_> {
    /// The first valid reply at or after row `i`, seen from an item of day
    /// `d`: replies after the end of day d+1 are beyond the horizon.
    #[inline]
    fn reply(&self, m: &Messages, i: usize, d: i32) -> Option<usize> {
        self.next_reply.get(i).filter(|&j| m.day[j] <= d + 1)
    }

    /// Finds the items of day `d` in thread rows `s..e` and evaluates them.
    fn thread(&self, m: &Messages, s: usize, e: usize, d: i32, acc: &mut Acc, keep: bool) {
        let metric = self.metric;
        let hours = metric.hours;
        let in_hours = |i: usize| hours.contains(m.tod[i] as i64);
        match metric.unit {
            Unit::Message => {
                for i in s..e {
                    if m.day[i] == d && is_inquiry(m, i) && in_hours(i) {
                        self.item(m, i, &[i], d, acc, keep);
                    }
                }
            }
            Unit::Buyer => {
                let inquiries: Vec<usize> = (s..e)
                    .filter(|&i| m.day[i] == d && is_inquiry(m, i) && in_hours(i))
                    .collect();
                if let Some(&first) = inquiries.first() {
                    self.item(m, first, &inquiries, d, acc, keep);
                }
            }
            Unit::Round => {
                // A round opens at an inquiry when none is taking inquiries:
                // the previous inquiry is of another local day (midnight stops
                // a round taking inquiries), or a valid reply came after it.
                let mut prev: Option<usize> = None;
                for i in s..e {
                    if !is_inquiry(m, i) {
                        continue;
                    }
                    let opens = match prev {
                        None => true,
                        Some(p) => {
                            m.day[p] != m.day[i] || self.next_reply.get(p).is_some_and(|r| r < i)
                        }
                    };
                    prev = Some(i);
                    if opens && m.day[i] == d && in_hours(i) {
                        self.item(m, i, &[i], d, acc, keep);
                    }
                }
            }
            Unit::Session => {
                let gap = metric
                    .session_gap_ms
                    .expect("validated: session units have a gap");
                for session in sessions(m, s, e, d, gap) {
                    let inquiries: Vec<usize> =
                        session.into_iter().filter(|&i| is_inquiry(m, i)).collect();
                    if let Some(&first) = inquiries.first() {
                        if in_hours(first) {
                            self.item(m, first, &inquiries, d, acc, keep);
                        }
                    }
                }
            }
        }
    }

    /// Evaluates one item: `start` is its first inquiry, `inquiries` those an
    /// any-miss rate checks (in thread order, starting with `start`).
    fn item(
        &self,
        m: &Messages,
        start: usize,
        inquiries: &[usize],
        d: i32,
        acc: &mut Acc,
        keep: bool,
    ) {
        let metric = self.metric;
        let start_reply = self.reply(m, start, d);
        let latency = |i: usize, r: Option<usize>| r.map(|j| m.ts[j] - m.ts[i]);

        let mut excluded = None;
        if matches!(metric.unit, Unit::Round | Unit::Session) {
            if metric.cross_day == Policy::Exclude && start_reply.is_some_and(|j| m.day[j] != d) {
                excluded = Some(Excluded::CrossDay);
            } else if metric.bot_only == Policy::Exclude
                && start_reply.is_none()
                && self
                    .next_bot
                    .and_then(|nb| nb.get(start))
                    .is_some_and(|b| m.day[b] <= d + 1)
            {
                excluded = Some(Excluded::BotOnly);
            }
        }

        // The reported inquiry and its reply: the first failing inquiry of an
        // any-miss item, else the start.
        let (mut timed, mut timed_reply) = (start, start_reply);
        let mut passed = None;
        let mut counted_ms = None;
        if excluded.is_none() {
            match metric.kind {
                Kind::Rate => {
                    let thr = metric
                        .threshold_ms
                        .expect("validated: rates have a threshold");
                    if metric.any_miss {
                        let failing = inquiries
                            .iter()
                            .map(|&i| (i, self.reply(m, i, d)))
                            .find(|&(i, r)| latency(i, r).is_none_or(|l| l > thr));
                        if let Some((i, r)) = failing {
                            (timed, timed_reply) = (i, r);
                        }
                    }
                    match latency(timed, timed_reply) {
                        Some(l) => passed = Some(l <= thr),
                        None => match metric.unreplied {
                            Unreplied::Exclude => excluded = Some(Excluded::Unreplied),
                            _ => passed = Some(false),
                        },
                    }
                }
                Kind::MeanLatency => match latency(start, start_reply) {
                    Some(l) => counted_ms = Some(metric.cap_ms.map_or(l, |c| l.min(c))),
                    None => match metric.unreplied {
                        Unreplied::Millis(ms) => counted_ms = Some(ms),
                        _ => excluded = Some(Excluded::Unreplied),
                    },
                },
            }
        }

        // The agent of the item: its buyer row's account, else the account of
        // the first valid reply at or after it within the horizon.
        let agent = match m.agent[start] {
            0 => start_reply.map_or(0, |j| m.agent[j]),
            a => a,
        };

        let totals = &mut acc.totals[self.index as usize];
        if excluded.is_some() {
            totals.excluded += 1;
        } else {
            totals.counted += 1;
            let c = acc
                .by_agent
                .entry((m.shop[start], agent, self.index))
                .or_default();
            c.denominator += 1;
            c.numerator += match metric.kind {
                Kind::Rate => i64::from(passed == Some(true)),
                Kind::MeanLatency => counted_ms.expect("counted mean-latency items have a value"),
            };
        }
        if keep {
            acc.items.push(Item {
                metric: self.index,
                shop: m.shop[start],
                buyer: m.buyer[start],
                agent,
                start: m.ts[start],
                reply: timed_reply.map(|j| m.ts[j]),
                latency_ms: latency(timed, timed_reply),
                counted_ms,
                passed,
                excluded,
            });
        }
    }
}

/// The sessions of local day `d` in thread rows `s..e`, as row lists in
/// thread order (SPEC §2): rows sharing a `session_id`, or, for rows without
/// one, runs split where consecutive rows are more than `gap_ms` apart. Only
/// rows of day `d` take part, which splits every session at local midnight.
fn sessions(m: &Messages, s: usize, e: usize, d: i32, gap_ms: i64) -> Vec<Vec<usize>> {
    let rows = (s..e).filter(|&i| m.day[i] == d);
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut by_id: HashMap<u32, usize> = HashMap::default();
    let mut current: Option<usize> = None; // index in `out` of the open gap-split session
    let mut last_ts: Option<i64> = None;
    for i in rows {
        let sid = if m.has_session_column {
            m.session[i]
        } else {
            NONE
        };
        if sid != NONE {
            let k = *by_id.entry(sid).or_insert_with(|| {
                out.push(Vec::new());
                out.len() - 1
            });
            out[k].push(i);
            continue;
        }
        let split = last_ts.is_none_or(|t| m.ts[i] - t > gap_ms);
        if split || current.is_none() {
            out.push(Vec::new());
            current = Some(out.len() - 1);
        }
        out[current.expect("set")].push(i);
        last_ts = Some(m.ts[i]);
    }
    out
}
