//! `kefu gen`: a deterministic synthetic message table with the shape of real
//! e-commerce chat logs, for tests, benchmarks and trying kefu out.
//!
//! Shape: shop traffic is skewed (Zipf-like: a few shops hold most
//! messages); buyers write in bursts; reply latencies are heavy-tailed
//! (log-normal, median about half a minute, a tail of hours); some threads
//! go unanswered; some shops run a bot, in or out of smart-assist mode;
//! agents send welcome auto-replies; a few buyers are spam or blocked; a few
//! threads are with the shop's own sub-accounts or platform staff; traffic
//! runs at night too and replies cross midnight. The same arguments always
//! give the same table.

use std::path::Path;

use chrono::{NaiveDate, TimeZone};
use polars::prelude::*;

use crate::error::{Error, Result};

mod scorecard;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub seed: u64,
    /// Rows, about (threads are generated whole).
    pub rows: u64,
    pub days: u32,
    pub shops: u32,
    /// The first local (Asia/Shanghai) day.
    pub start: NaiveDate,
    /// Shuffle the row order (as exports often are) instead of sorting by time.
    pub shuffled: bool,
    pub row_group_size: Option<usize>,
}

/// SplitMix64.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(1e-12);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Relative traffic by local hour: quiet nights, peaks late morning,
/// afternoon and evening.
const HOUR_WEIGHTS: [f64; 24] = [
    1.5, 0.8, 0.4, 0.2, 0.2, 0.3, 0.6, 1.5, 3.5, 5.5, 7.0, 7.0, 5.5, 5.0, 6.5, 7.0, 6.5, 5.5, 5.0,
    6.0, 7.0, 7.5, 6.0, 3.5,
];

struct Shop {
    agents: u32,
    /// The shop runs a bot; whether it is in smart-assist mode.
    bot: Option<bool>,
    /// Share of threads nobody answers.
    neglect: f64,
    /// Median reply latency in seconds.
    median_s: f64,
}

#[derive(Default)]
struct Columns {
    /// In every msg_id, so tables generated with different seeds can be
    /// combined (e.g. as the parts of one large day) without duplicates.
    seed: u64,
    shop: Vec<String>,
    buyer: Vec<String>,
    ts: Vec<i64>,
    sender: Vec<&'static str>,
    msg_id: Vec<String>,
    agent: Vec<Option<String>>,
    auto: Vec<bool>,
    assist: Vec<bool>,
    spam: Vec<bool>,
    blocked: Vec<bool>,
    peer_kind: Vec<&'static str>,
}

/// A consumer thread's first message: a consult buyer-day for the
/// scorecard tables to hang orders, complaints and ratings on.
struct Thread {
    shop: u32,
    agents: u32,
    buyer: String,
    /// UTC ms.
    start: i64,
    /// UTC ms of the local midnight starting the thread's day.
    midnight: i64,
}

struct Row {
    ts: i64,
    sender: &'static str,
    agent: Option<String>,
    auto: bool,
    assist: bool,
}

impl Columns {
    fn push(&mut self, shop: &str, buyer: &str, r: Row, flags: (bool, bool, &'static str)) {
        let n = self.ts.len();
        self.shop.push(shop.to_string());
        self.buyer.push(buyer.to_string());
        self.ts.push(r.ts);
        self.sender.push(r.sender);
        self.msg_id.push(format!("m{}-{n}", self.seed));
        self.agent.push(r.agent);
        self.auto.push(r.auto);
        self.assist.push(r.assist);
        self.spam.push(flags.0);
        self.blocked.push(flags.1);
        self.peer_kind.push(flags.2);
    }
}

/// Generates the table in memory.
pub fn generate(cfg: &GenConfig) -> Result<DataFrame> {
    Ok(build(cfg)?.0)
}

/// The message table and its threads (what the scorecard tables hang on).
fn build(cfg: &GenConfig) -> Result<(DataFrame, Vec<Thread>)> {
    if cfg.days == 0 || cfg.shops == 0 {
        return Err(Error::Usage(
            "gen: --days and --shops must be at least 1".into(),
        ));
    }
    let mut rng = Rng::new(cfg.seed);
    let tz = chrono_tz::Asia::Shanghai;
    let shops: Vec<Shop> = (0..cfg.shops)
        .map(|_| Shop {
            agents: 1 + rng.below(8) as u32,
            bot: rng.chance(0.35).then(|| rng.chance(0.6)),
            neglect: 0.02 + 0.12 * rng.unit() * rng.unit(),
            median_s: 8.0 + 80.0 * rng.unit() * rng.unit(),
        })
        .collect();
    // Zipf-like weights, cumulative for sampling.
    let mut cum = Vec::with_capacity(shops.len());
    let mut total = 0.0;
    for k in 0..shops.len() {
        total += 1.0 / ((k + 1) as f64).powf(1.1);
        cum.push(total);
    }
    let hour_total: f64 = HOUR_WEIGHTS.iter().sum();
    let per_day = cfg.rows / cfg.days as u64;
    let mut cols = Columns {
        seed: cfg.seed,
        ..Default::default()
    };
    let mut dup_candidates: Vec<usize> = Vec::new();
    let mut threads: Vec<Thread> = Vec::new();

    for day_k in 0..cfg.days {
        let day = cfg.start + chrono::Duration::days(day_k as i64);
        let midnight = tz
            .from_local_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight"))
            .single()
            .ok_or_else(|| Error::Usage(format!("gen: {day} has no single local midnight")))?
            .timestamp_millis();
        let target = cols.ts.len() as u64 + per_day;
        let mut thread_no = 0u64;
        while (cols.ts.len() as u64) < target {
            thread_no += 1;
            let x = rng.unit() * total;
            let s = cum.partition_point(|&c| c < x).min(shops.len() - 1);
            let shop = &shops[s];
            let shop_id = format!("shop{s:05}");
            let buyer_id = format!("u{}", rng.below(50_000 + 20 * per_day));
            // Start time from the daily profile.
            let mut h = rng.unit() * hour_total;
            let mut hour = 0;
            while hour < 23 && h >= HOUR_WEIGHTS[hour] {
                h -= HOUR_WEIGHTS[hour];
                hour += 1;
            }
            let mut t = midnight + hour as i64 * 3_600_000 + rng.below(3_600_000) as i64;
            let spam = rng.chance(0.01);
            let blocked = rng.chance(0.005);
            let peer: &'static str = match rng.below(1000) {
                0..=9 => "sub_account",
                10..=12 => "platform_staff",
                _ => "consumer",
            };
            let flags = (spam, blocked, peer);
            if !spam && !blocked && peer == "consumer" {
                // Recording draws nothing from `rng`: the table stays as it was.
                threads.push(Thread {
                    shop: s as u32,
                    agents: shop.agents,
                    buyer: buyer_id.clone(),
                    start: t,
                    midnight,
                });
            }
            let routed = rng
                .chance(0.5)
                .then(|| format!("{shop_id}:agent{}", rng.below(shop.agents as u64)));
            let neglected = rng.chance(shop.neglect);
            let rounds = 1 + (rng.unit().powi(3) * 5.0) as u32;
            if rng.chance(0.2) {
                // Welcome auto-reply.
                cols.push(
                    &shop_id,
                    &buyer_id,
                    Row {
                        ts: t,
                        sender: "agent",
                        agent: routed.clone(),
                        auto: true,
                        assist: false,
                    },
                    flags,
                );
            }
            for _ in 0..rounds {
                let burst = 1 + (rng.unit().powi(2) * 5.0) as u32;
                for _ in 0..burst {
                    let auto = rng.chance(0.05);
                    cols.push(
                        &shop_id,
                        &buyer_id,
                        Row {
                            ts: t,
                            sender: "buyer",
                            agent: routed.clone(),
                            auto,
                            assist: false,
                        },
                        flags,
                    );
                    t += 1000 + rng.below(40_000) as i64;
                }
                if let Some(assist) = shop.bot {
                    if rng.chance(0.7) {
                        t += 1000 + rng.below(8000) as i64;
                        cols.push(
                            &shop_id,
                            &buyer_id,
                            Row {
                                ts: t,
                                sender: "bot",
                                agent: Some(format!("{shop_id}:bot")),
                                auto: false,
                                assist,
                            },
                            flags,
                        );
                    }
                }
                if neglected || rng.chance(0.03) {
                    continue;
                }
                let latency_s = (shop.median_s.ln() + 1.3 * rng.normal())
                    .exp()
                    .min(2.0 * 86_400.0);
                t += (latency_s * 1000.0) as i64;
                let agent = routed
                    .clone()
                    .unwrap_or_else(|| format!("{shop_id}:agent{}", rng.below(shop.agents as u64)));
                let replies = 1 + rng.below(3);
                for _ in 0..replies {
                    cols.push(
                        &shop_id,
                        &buyer_id,
                        Row {
                            ts: t,
                            sender: "agent",
                            agent: Some(agent.clone()),
                            auto: false,
                            assist: false,
                        },
                        flags,
                    );
                    t += 2000 + rng.below(30_000) as i64;
                }
                if rng.chance(0.02) {
                    cols.push(
                        &shop_id,
                        &buyer_id,
                        Row {
                            ts: t,
                            sender: "system",
                            agent: None,
                            auto: true,
                            assist: false,
                        },
                        flags,
                    );
                }
                // Think time before the buyer's next round.
                t += (rng.unit().powi(2) * 1_800_000.0) as i64;
            }
            if thread_no.is_multiple_of(500) {
                dup_candidates.push(cols.ts.len() - 1);
            }
        }
    }
    // Re-exported duplicates: the same row twice.
    for &i in &dup_candidates {
        let r = Row {
            ts: cols.ts[i],
            sender: cols.sender[i],
            agent: cols.agent[i].clone(),
            auto: cols.auto[i],
            assist: cols.assist[i],
        };
        let (shop, buyer, id) = (
            cols.shop[i].clone(),
            cols.buyer[i].clone(),
            cols.msg_id[i].clone(),
        );
        let flags = (cols.spam[i], cols.blocked[i], cols.peer_kind[i]);
        cols.push(&shop, &buyer, r, flags);
        *cols.msg_id.last_mut().expect("pushed") = id;
    }

    let n = cols.ts.len();
    let mut order: Vec<usize> = (0..n).collect();
    if cfg.shuffled {
        for i in (1..n).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
    } else {
        order.sort_by_key(|&i| (cols.ts[i], i));
    }
    fn pick_s<'a>(order: &[usize], v: &'a [String]) -> Vec<&'a str> {
        order.iter().map(|&i| v[i].as_str()).collect()
    }
    let pick_b = |v: &Vec<bool>| order.iter().map(|&i| v[i]).collect::<Vec<_>>();
    let df = DataFrame::new_infer_height(vec![
        Column::new("shop_id".into(), pick_s(&order, &cols.shop)),
        Column::new("buyer_id".into(), pick_s(&order, &cols.buyer)),
        Column::new(
            "ts".into(),
            order.iter().map(|&i| cols.ts[i]).collect::<Vec<_>>(),
        )
        .cast(&DataType::Datetime(
            TimeUnit::Milliseconds,
            Some(polars::prelude::TimeZone::UTC),
        ))
        .map_err(|e| Error::Io(e.to_string()))?,
        Column::new(
            "sender".into(),
            order.iter().map(|&i| cols.sender[i]).collect::<Vec<_>>(),
        ),
        Column::new("msg_id".into(), pick_s(&order, &cols.msg_id)),
        Column::new(
            "agent_id".into(),
            order
                .iter()
                .map(|&i| cols.agent[i].as_deref())
                .collect::<Vec<_>>(),
        ),
        Column::new("auto".into(), pick_b(&cols.auto)),
        Column::new("assist".into(), pick_b(&cols.assist)),
        Column::new("spam".into(), pick_b(&cols.spam)),
        Column::new("blocked".into(), pick_b(&cols.blocked)),
        Column::new(
            "peer_kind".into(),
            order.iter().map(|&i| cols.peer_kind[i]).collect::<Vec<_>>(),
        ),
    ])
    .map_err(|e| Error::Io(e.to_string()))?;
    Ok((df, threads))
}

/// Generates and writes the table to `path`.
pub fn write(cfg: &GenConfig, path: &Path) -> Result<u64> {
    let mut df = generate(cfg)?;
    write_parquet(&mut df, path, cfg.row_group_size)?;
    Ok(df.height() as u64)
}

/// Generates and writes the message table to `path` and the four scorecard
/// tables (SPEC §8.1) for the same shops, buyers, agents and days into
/// `dir`: `orders.parquet` (float yuan), `orders_decimal.parquet` (the same
/// orders, decimal yuan), `refunds.parquet`, `complaints.parquet`,
/// `ratings.parquet`. The message table is the one [`write`] writes.
/// Returns the message rows and (file name, rows) of each table.
pub fn write_with_scorecard(
    cfg: &GenConfig,
    path: &Path,
    dir: &Path,
) -> Result<(u64, Vec<(&'static str, u64)>)> {
    let (mut df, threads) = build(cfg)?;
    write_parquet(&mut df, path, cfg.row_group_size)?;
    let mut written = Vec::new();
    for (name, mut t) in scorecard::tables(cfg, &threads, df.height() as u64)? {
        write_parquet(&mut t, &dir.join(name), cfg.row_group_size)?;
        written.push((name, t.height() as u64));
    }
    Ok((df.height() as u64, written))
}

fn write_parquet(df: &mut DataFrame, path: &Path, row_group_size: Option<usize>) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Io(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut f = std::fs::File::create(path)
        .map_err(|e| Error::Io(format!("cannot create {}: {e}", path.display())))?;
    ParquetWriter::new(&mut f)
        .with_row_group_size(row_group_size)
        .with_statistics(StatisticsOptions::full())
        .finish(df)
        .map_err(|e| Error::Io(format!("cannot write {}: {e}", path.display())))?;
    Ok(())
}
