//! NAIVE reference implementation of the kefu metrics (SPEC §1-§4), for
//! differential tests only.
//!
//! Written straight from /work/shared/SPEC.md with plain loops: no indexes,
//! no cleverness, O(n^2) everywhere. Every piece quotes the SPEC phrase it
//! implements. Depends only on `std`, `chrono` and `chrono-tz`.
//!
//! ## Ambiguities and how this file resolves them (most literal reading)
//!
//! 1. "in hours" is tested on the local WALL-CLOCK time of day (hour*60+minute
//!    of the local time in `tz`): start_min <= minute < end_min. Comparing whole
//!    minutes is the same as comparing milliseconds since local midnight
//!    against start*60000 / end*60000 (floor(t/60000) >= s <=> t >= s*60000).
//!    On DST days the wall clock (not the elapsed time since midnight) is used.
//! 2. "local midnight" (round stops taking inquiries, session split) = the
//!    local DATE of the row differs from the local date of the round's opener /
//!    of the previous row of the session.
//! 3. Horizon: a reply (or a bot row, for bot_only) is "within the horizon" of
//!    an item of day D iff its local date is <= D+1. Every row is checked on
//!    its own (no early `break`), so a non-monotonic local date (exotic DST)
//!    cannot hide anything.
//! 4. Rounds are built per metric (the reply that closes rounds is "the first
//!    reply (of the rule's classes)"), from ALL inquiries, ignoring the
//!    horizon. A round's reply is the first valid reply after its start, so its
//!    latency equals the latency of its start inquiry (searched within the
//!    horizon of the round's day).
//! 5. A round whose day is D is only ever joined by inquiries of D, and a
//!    session never crosses midnight, so every inquiry of an item has the
//!    item's day and therefore the same horizon D+1.
//! 6. Session gap: split when `next.ts - prev.ts > session_gap*1000` (strictly
//!    "exceeds"). A `session` metric with `session_gap_s = None` (a validation
//!    error in the real tool) is split only at midnight.
//!    With the session column, sessions are keyed by (thread, session_id,
//!    local date); `Some("")` is an ordinary session id. Rows with a `None`
//!    session_id are split by gap and midnight among themselves only.
//! 7. De-duplication compares the local date of `ts` (in `tz`); `Some("")` is
//!    an ordinary (non-null) msg_id. It runs after bad-row removal and BEFORE
//!    the peer_kind filter, so a non-consumer row can shadow a later consumer
//!    row with the same (shop, msg_id, local day).
//! 8. `any_miss` is honoured only for `rate` metrics of unit `buyer` or
//!    `session` (elsewhere it is a validation error; here it is ignored).
//!    With any_miss the inquiries are checked in thread order; the item fails
//!    at the first inquiry that is unreplied or has latency > threshold. With
//!    `unreplied = Exclude` the item is excluded when that FIRST failing
//!    inquiry is unreplied (a later unreplied inquiry does not matter).
//! 9. cross_day: the item's reply "falls on the next local day" iff its local
//!    date == D+1 (D = item day). bot_only and cross_day apply only to the
//!    `round` and `session` units. When bot_only excludes an item, that wins
//!    over the `unreplied` policy (the item is dropped from both sides).
//!    The bot row for bot_only must come after the start in thread order (so
//!    a bot row with the same ts counts, one with an earlier position does not).
//! 10. Invalid combinations (validation errors in the real tool): a rate with
//!    `Unreplied::Seconds(_)` is treated like `Fail`; a mean latency with
//!    `Unreplied::Fail` is treated like `Exclude`; a rate with
//!    `threshold_s = None` panics.
//! 11. Agent of an item: the buyer row's agent_id if `Some` and non-empty,
//!    else the agent_id of the first valid reply after that row within the
//!    horizon (`None` -> ""), else "". For an any_miss `buyer` item the buyer
//!    row is still the first in-hours inquiry of the day.
//! 12. cap applies to observed latencies only (min(latency, cap*1000)), never
//!    to the `unreplied` stand-in.

#![allow(dead_code, clippy::all)]

use chrono::{NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub struct Msg {
    pub shop: String,
    pub buyer: String,
    pub ts_ms: i64,
    pub sender: String,
    pub msg_id: Option<String>,
    pub agent_id: Option<String>,
    pub auto: bool,
    pub assist: bool,
    pub spam: bool,
    pub blocked: bool,
    pub peer_kind: String,
    pub session_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Unit {
    Message,
    Buyer,
    Round,
    Session,
}
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Rate,
    MeanLatency,
}
#[derive(Clone, Debug, PartialEq)]
pub enum Unreplied {
    Fail,
    Exclude,
    Seconds(i64),
}

#[derive(Clone, Debug)]
pub struct Metric {
    pub id: String,
    pub unit: Unit,
    pub kind: Kind,
    pub threshold_s: Option<i64>,
    pub any_miss: bool,
    pub hours_start_min: u32,
    pub hours_end_min: u32,
    pub manual: bool,
    pub assist: bool,
    pub cross_day_exclude: bool,
    pub bot_only_exclude: bool,
    pub cap_s: Option<i64>,
    pub unreplied: Unreplied,
    pub session_gap_s: Option<i64>,
}

// ---------------------------------------------------------------------------
// Time helpers
// ---------------------------------------------------------------------------

/// "All times are local in the rule file's `timezone`": the local date of an
/// instant.
pub fn local_date(ts_ms: i64, tz: Tz) -> NaiveDate {
    Utc.timestamp_millis_opt(ts_ms)
        .single()
        .expect("timestamp out of range")
        .with_timezone(&tz)
        .date_naive()
}

/// Local wall-clock minute of the day (0..1440).
fn local_minute_of_day(ts_ms: i64, tz: Tz) -> u32 {
    let t = Utc
        .timestamp_millis_opt(ts_ms)
        .single()
        .expect("timestamp out of range")
        .with_timezone(&tz);
    t.hour() * 60 + t.minute()
}

/// "in hours: the rule's hours = "HH:MM-HH:MM", start inclusive, end
/// exclusive (08:00-24:00 means to midnight)".
fn in_hours(ts_ms: i64, m: &Metric, tz: Tz) -> bool {
    let minute = local_minute_of_day(ts_ms, tz);
    m.hours_start_min <= minute && minute < m.hours_end_min
}

fn next_day(d: NaiveDate) -> NaiveDate {
    d.succ_opt().expect("date overflow")
}

// ---------------------------------------------------------------------------
// Row classification
// ---------------------------------------------------------------------------

/// "inquiry: sender = buyer, not auto, not spam, not blocked, and
/// peer_kind = consumer."
fn is_inquiry(r: &Msg) -> bool {
    r.sender == "buyer" && !r.auto && !r.spam && !r.blocked && r.peer_kind == "consumer"
}

/// "responder classes: manual = sender = agent and not auto; assist =
/// sender = bot and assist. A rule names the classes that count as a reply.
/// Any other agent or bot message ... is an invalid reply: it answers nothing."
fn is_valid_reply(r: &Msg, m: &Metric) -> bool {
    let manual = r.sender == "agent" && !r.auto;
    let assist = r.sender == "bot" && r.assist;
    (manual && m.manual) || (assist && m.assist)
}

/// "horizon: an item whose day is D sees replies up to the end of local day
/// D+1 (before 00:00 of D+2), never later".
fn within_horizon(r: &Msg, item_day: NaiveDate, tz: Tz) -> bool {
    local_date(r.ts_ms, tz) <= next_day(item_day)
}

/// "latency of an inquiry: time from it to the first reply (of the rule's
/// classes) at or after it in the thread, within the horizon. No such reply:
/// unreplied."
///
/// `thread` is in thread order; the buyer row at `pos` is not itself a reply,
/// so "at or after it" = the positions after `pos` (a reply with the same ts
/// is after it, because "buyer rows before all others").
/// Returns the position of the reply in `thread`.
fn first_valid_reply(
    thread: &[&Msg],
    pos: usize,
    m: &Metric,
    item_day: NaiveDate,
    tz: Tz,
) -> Option<usize> {
    let mut k = pos + 1;
    while k < thread.len() {
        let r = thread[k];
        if is_valid_reply(r, m) && within_horizon(r, item_day, tz) {
            return Some(k);
        }
        k += 1;
    }
    None
}

// ---------------------------------------------------------------------------
// §1: bad rows, de-duplication, peer_kind filter
// ---------------------------------------------------------------------------

/// Returns the indexes (into `msgs`, i.e. input order) of the rows that
/// survive §1 and the peer_kind filter.
fn surviving_rows(msgs: &[Msg], tz: Tz) -> Vec<usize> {
    // "a sender outside the four values, are bad rows, removed before
    // de-duplication"
    let mut good: Vec<usize> = Vec::new();
    for (i, r) in msgs.iter().enumerate() {
        let s = r.sender.as_str();
        if s == "buyer" || s == "agent" || s == "bot" || s == "system" {
            good.push(i);
        }
    }

    // "rows repeating a (shop_id, msg_id) pair on the same local day are
    // dropped (the first in input order kept)"; "a null msg_id is never a
    // duplicate".
    let mut deduped: Vec<usize> = Vec::new();
    for a in 0..good.len() {
        let ra = &msgs[good[a]];
        let mut dup = false;
        if let Some(id_a) = &ra.msg_id {
            for b in 0..a {
                let rb = &msgs[good[b]];
                if let Some(id_b) = &rb.msg_id {
                    if rb.shop == ra.shop
                        && id_b == id_a
                        && local_date(rb.ts_ms, tz) == local_date(ra.ts_ms, tz)
                    {
                        dup = true;
                    }
                }
            }
        }
        if !dup {
            deduped.push(good[a]);
        }
    }

    // "Rows whose peer_kind is anything else are left out of everything after
    // de-duplication (they neither ask, nor answer, nor split sessions)."
    let mut out = Vec::new();
    for i in deduped {
        if msgs[i].peer_kind == "consumer" {
            out.push(i);
        }
    }
    out
}

/// "a thread is all messages of one (shop_id, buyer_id)"; "Within a thread,
/// messages are ordered by ts, then buyer rows before all others, then input
/// order."
fn build_threads(msgs: &[Msg], rows: &[usize]) -> Vec<Vec<usize>> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for &i in rows {
        let k = (msgs[i].shop.clone(), msgs[i].buyer.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut threads = Vec::new();
    for k in &keys {
        let mut t: Vec<usize> = Vec::new();
        for &i in rows {
            if msgs[i].shop == k.0 && msgs[i].buyer == k.1 {
                t.push(i);
            }
        }
        t.sort_by(|&a, &b| {
            let ra = &msgs[a];
            let rb = &msgs[b];
            let a_not_buyer = ra.sender != "buyer";
            let b_not_buyer = rb.sender != "buyer";
            ra.ts_ms
                .cmp(&rb.ts_ms)
                .then(a_not_buyer.cmp(&b_not_buyer)) // false (buyer) first
                .then(a.cmp(&b)) // input order
        });
        threads.push(t);
    }
    threads
}

// ---------------------------------------------------------------------------
// §2: items
// ---------------------------------------------------------------------------

/// One item of a metric.
struct Item {
    /// Position (in the thread) of the item's buyer row: "the inquiry itself
    /// (message), the first in-hours inquiry of the day (buyer), the start
    /// (round, session)". This is the inquiry that is timed when not any_miss.
    anchor: usize,
    /// For any_miss: the inquiries that must all pass, in thread order.
    all_inquiries: Vec<usize>,
    /// "The item's day is the local date of that same time."
    day: NaiveDate,
}

/// "round (首问首答): opens at an inquiry when no round is taking inquiries;
/// every later inquiry of the same local day joins it; the first reply closes
/// every open round. At local midnight an open round stops taking inquiries
/// (it stays open for its reply), so the next day's first inquiry opens a new
/// round. Its start is its first inquiry."
/// Returns the positions of the rounds' starts.
fn round_starts(thread: &[&Msg], m: &Metric, tz: Tz) -> Vec<usize> {
    let mut starts = Vec::new();
    // Day of the round currently taking inquiries, if any.
    let mut taking: Option<NaiveDate> = None;
    for (p, r) in thread.iter().enumerate() {
        if is_inquiry(r) {
            let d = local_date(r.ts_ms, tz);
            if taking == Some(d) {
                // joins the round that is taking inquiries
            } else {
                // no round taking inquiries (or it stopped at midnight)
                starts.push(p);
                taking = Some(d);
            }
        } else if is_valid_reply(r, m) {
            // "the first reply closes every open round"
            taking = None;
        }
    }
    starts
}

/// "session: the rows of a thread sharing a session_id, or, without that
/// column, the thread's messages split where the gap between consecutive
/// messages exceeds session_gap ... measured between consecutive rows of any
/// sender that survived §1 and the peer_kind filter (rows with a null
/// session_id are split this way among themselves). Either way a session is
/// also split at local midnight."
/// Returns sessions as lists of thread positions, each in thread order.
fn sessions(thread: &[&Msg], has_session_column: bool, m: &Metric, tz: Tz) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();

    // Split a list of positions (in thread order) by gap and by midnight.
    let split_by_gap = |positions: &[usize], out: &mut Vec<Vec<usize>>| {
        let mut cur: Vec<usize> = Vec::new();
        for &p in positions {
            if let Some(&prev) = cur.last() {
                let gap_ms = thread[p].ts_ms - thread[prev].ts_ms;
                let gap_split = match m.session_gap_s {
                    Some(g) => gap_ms > g * 1000,
                    None => false,
                };
                let midnight_split =
                    local_date(thread[p].ts_ms, tz) != local_date(thread[prev].ts_ms, tz);
                if gap_split || midnight_split {
                    out.push(std::mem::take(&mut cur));
                }
            }
            cur.push(p);
        }
        if !cur.is_empty() {
            out.push(cur);
        }
    };

    if !has_session_column {
        let all: Vec<usize> = (0..thread.len()).collect();
        split_by_gap(&all, &mut out);
    } else {
        // Rows sharing (session_id, local day).
        let mut keys: Vec<(String, NaiveDate)> = Vec::new();
        for r in thread.iter() {
            if let Some(s) = &r.session_id {
                let k = (s.clone(), local_date(r.ts_ms, tz));
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        for k in &keys {
            let mut s = Vec::new();
            for (p, r) in thread.iter().enumerate() {
                if r.session_id.as_ref() == Some(&k.0) && local_date(r.ts_ms, tz) == k.1 {
                    s.push(p);
                }
            }
            out.push(s);
        }
        // Rows with a null session_id, split among themselves.
        let mut nulls = Vec::new();
        for (p, r) in thread.iter().enumerate() {
            if r.session_id.is_none() {
                nulls.push(p);
            }
        }
        split_by_gap(&nulls, &mut out);
    }
    out
}

/// The items of metric `m` in one thread whose day is `day`.
fn items_of_thread(
    thread: &[&Msg],
    has_session_column: bool,
    m: &Metric,
    tz: Tz,
    day: NaiveDate,
) -> Vec<Item> {
    let mut items = Vec::new();
    match m.unit {
        Unit::Message => {
            // "message = each inquiry"; hours "tested on the inquiry's time".
            for (p, r) in thread.iter().enumerate() {
                if is_inquiry(r) && in_hours(r.ts_ms, m, tz) && local_date(r.ts_ms, tz) == day {
                    items.push(Item {
                        anchor: p,
                        all_inquiries: vec![p],
                        day,
                    });
                }
            }
        }
        Unit::Buyer => {
            // "buyer = each (buyer, local day) with at least one inquiry in
            // hours"; any_miss: "any of its in-hours inquiries that day".
            let mut in_hours_inquiries = Vec::new();
            for (p, r) in thread.iter().enumerate() {
                if is_inquiry(r) && in_hours(r.ts_ms, m, tz) && local_date(r.ts_ms, tz) == day {
                    in_hours_inquiries.push(p);
                }
            }
            if !in_hours_inquiries.is_empty() {
                items.push(Item {
                    anchor: in_hours_inquiries[0],
                    all_inquiries: in_hours_inquiries,
                    day,
                });
            }
        }
        Unit::Round => {
            // "Rounds and sessions are built from all inquiries; hours then
            // choose the items by their start".
            for p in round_starts(thread, m, tz) {
                let r = thread[p];
                if in_hours(r.ts_ms, m, tz) && local_date(r.ts_ms, tz) == day {
                    items.push(Item {
                        anchor: p,
                        all_inquiries: vec![p],
                        day,
                    });
                }
            }
        }
        Unit::Session => {
            for s in sessions(thread, has_session_column, m, tz) {
                // "Its start is its first inquiry; a session with no inquiry
                // is not an item."
                let mut inqs = Vec::new();
                for &p in &s {
                    if is_inquiry(thread[p]) {
                        inqs.push(p);
                    }
                }
                if inqs.is_empty() {
                    continue;
                }
                let start = inqs[0];
                let r = thread[start];
                if in_hours(r.ts_ms, m, tz) && local_date(r.ts_ms, tz) == day {
                    // any_miss: "for session, any inquiry of the session, in
                    // hours or not"
                    items.push(Item {
                        anchor: start,
                        all_inquiries: inqs,
                        day,
                    });
                }
            }
        }
    }
    items
}

// ---------------------------------------------------------------------------
// §3: evaluating an item
// ---------------------------------------------------------------------------

/// What an item contributes: None = excluded (dropped from both sides),
/// Some(n) = counted, adding n to the numerator and 1 to the denominator.
fn evaluate(thread: &[&Msg], item: &Item, m: &Metric, tz: Tz) -> Option<i64> {
    let d = item.day;
    let start = thread[item.anchor];
    let reply = first_valid_reply(thread, item.anchor, m, d, tz);
    let round_or_session = m.unit == Unit::Round || m.unit == Unit::Session;

    // cross_day exclude: "a round/session whose reply (the first valid reply
    // at or after its start, within the horizon) falls on the next local day
    // is dropped from both sides. A reply beyond the horizon means unreplied,
    // never cross-day"
    if round_or_session && m.cross_day_exclude {
        if let Some(k) = reply {
            if local_date(thread[k].ts_ms, tz) == next_day(d) {
                return None;
            }
        }
    }

    // bot_only exclude: "a round/session with no valid reply within the
    // horizon, but with a bot row (sender = bot, not of the rule's classes) at
    // or after its start within the horizon, is dropped from both sides"
    if round_or_session && m.bot_only_exclude && reply.is_none() {
        let mut k = item.anchor + 1;
        while k < thread.len() {
            let r = thread[k];
            if r.sender == "bot" && !is_valid_reply(r, m) && within_horizon(r, d, tz) {
                return None;
            }
            k += 1;
        }
    }

    match m.kind {
        Kind::Rate => {
            let thr_ms = m.threshold_s.expect("rate metric without threshold") * 1000;
            // "fail (counted, not passing) or exclude"
            let exclude_unreplied = m.unreplied == Unreplied::Exclude;
            let any_miss = m.any_miss && (m.unit == Unit::Buyer || m.unit == Unit::Session);
            if any_miss {
                // "the item fails when any inquiry in it is unreplied or later
                // than threshold"
                for &p in &item.all_inquiries {
                    match first_valid_reply(thread, p, m, d, tz) {
                        None => {
                            // first failing inquiry is unreplied
                            return if exclude_unreplied { None } else { Some(0) };
                        }
                        Some(k) => {
                            let lat = thread[k].ts_ms - thread[p].ts_ms;
                            if lat > thr_ms {
                                return Some(0);
                            }
                        }
                    }
                }
                Some(1)
            } else {
                // "otherwise only its first such inquiry is timed": an item
                // passes "when its latency is <= threshold"
                match reply {
                    None => {
                        if exclude_unreplied {
                            None
                        } else {
                            Some(0)
                        }
                    }
                    Some(k) => {
                        let lat = thread[k].ts_ms - start.ts_ms;
                        if lat <= thr_ms {
                            Some(1)
                        } else {
                            Some(0)
                        }
                    }
                }
            }
        }
        Kind::MeanLatency => match reply {
            // "exclude drops them, a number counts them as that many seconds"
            None => match m.unreplied {
                Unreplied::Seconds(n) => Some(n * 1000),
                Unreplied::Exclude | Unreplied::Fail => None,
            },
            // "cap: each observed latency is capped at this (not the unreplied
            // stand-in)"
            Some(k) => {
                let lat = thread[k].ts_ms - start.ts_ms;
                match m.cap_s {
                    Some(c) => Some(lat.min(c * 1000)),
                    None => Some(lat),
                }
            }
        },
    }
}

/// "agent of an item: the agent_id of its buyer row ... if non-empty; else
/// the account of the first valid reply at or after that row within the
/// horizon; else the empty string."
fn agent_of(thread: &[&Msg], item: &Item, m: &Metric, tz: Tz) -> String {
    let row = thread[item.anchor];
    if let Some(a) = &row.agent_id {
        if !a.is_empty() {
            return a.clone();
        }
    }
    if let Some(k) = first_valid_reply(thread, item.anchor, m, item.day, tz) {
        return thread[k].agent_id.clone().unwrap_or_default();
    }
    String::new()
}

// ---------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------

/// (shop_id, agent_id, metric id) -> (numerator, denominator), only entries
/// with denominator > 0.
pub fn reference(
    msgs: &[Msg],
    has_session_column: bool,
    metrics: &[Metric],
    tz: Tz,
    day: NaiveDate,
) -> BTreeMap<(String, String, String), (i64, i64)> {
    let rows = surviving_rows(msgs, tz);
    let threads = build_threads(msgs, &rows);

    let mut out: BTreeMap<(String, String, String), (i64, i64)> = BTreeMap::new();
    for m in metrics {
        for t in &threads {
            let thread: Vec<&Msg> = t.iter().map(|&i| &msgs[i]).collect();
            for item in items_of_thread(&thread, has_session_column, m, tz, day) {
                if let Some(num) = evaluate(&thread, &item, m, tz) {
                    let agent = agent_of(&thread, &item, m, tz);
                    let key = (thread[0].shop.clone(), agent, m.id.clone());
                    let e = out.entry(key).or_insert((0, 0));
                    e.0 += num;
                    e.1 += 1;
                }
            }
        }
    }
    // "Metric rows exist only where the denominator is greater than 0" (every
    // entry above has denominator >= 1; this is a guard).
    out.retain(|_, v| v.1 > 0);
    out
}
