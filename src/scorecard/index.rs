//! The tables ordered for day-by-day work: each table's rows sorted once
//! per run by (the local day its metrics file it under, shop), input order
//! kept within, so that the rows of one day's shop range — a bucket's
//! shops, or every shop — are found by binary search instead of a pass
//! over the table.
//!
//! Only the relative order of rows of one shop and one day matters to the
//! metrics (ties among orders paid at one instant, among ratings of one
//! buyer; §8.2), and that stays input order.

use polars::prelude::PlHashMap;
use rayon::prelude::*;

use super::compute::ScoreKind;
use super::tables::{Complaint, Order, Rating, Refund, Table, Tables};
use crate::model::permute;

/// The rows one day D's metrics read: orders paid on D or D+1 (those of D
/// first), `success` refunds finished on D, complaints and ratings of D.
/// `None` for a table the run was not given. Within a shop, rows keep
/// input order.
#[derive(Clone, Debug, Default)]
pub struct DayRows<'t> {
    pub orders: Option<Vec<&'t Order>>,
    pub refunds: Option<Vec<&'t Refund>>,
    pub complaints: Option<Vec<&'t Complaint>>,
    pub ratings: Option<Vec<&'t Rating>>,
}

impl<'t> DayRows<'t> {
    /// The rows of day `day`, by a pass over tables in any order.
    pub fn filtered(day: i32, t: &'t Tables) -> DayRows<'t> {
        fn on<'a, R: Dated>(t: &'a Option<Table<R>>, days: &[i32]) -> Option<Vec<&'a R>> {
            t.as_ref().map(|t| {
                days.iter()
                    .flat_map(|&d| t.rows.iter().filter(move |r| r.day() == d))
                    .collect()
            })
        }
        DayRows {
            orders: on(&t.orders, &[day, day + 1]),
            refunds: on(&t.refunds, &[day]),
            complaints: on(&t.complaints, &[day]),
            ratings: on(&t.ratings, &[day]),
        }
    }

    /// Whether the tables `kind` reads were given.
    pub fn has(&self, kind: ScoreKind) -> bool {
        kind.tables().iter().all(|t| match *t {
            "orders" => self.orders.is_some(),
            "refunds" => self.refunds.is_some(),
            "complaints" => self.complaints.is_some(),
            _ => self.ratings.is_some(),
        })
    }
}

/// A row's shop and the local day its metrics file it under.
pub trait Dated {
    fn day(&self) -> i32;
    fn shop(&self) -> &str;
}

impl Dated for Order {
    fn day(&self) -> i32 {
        self.paid.day
    }
    fn shop(&self) -> &str {
        &self.shop
    }
}

impl Dated for Refund {
    fn day(&self) -> i32 {
        self.finished.day
    }
    fn shop(&self) -> &str {
        &self.shop
    }
}

impl Dated for Complaint {
    fn day(&self) -> i32 {
        self.ts.day
    }
    fn shop(&self) -> &str {
        &self.shop
    }
}

impl Dated for Rating {
    fn day(&self) -> i32 {
        self.ts.day
    }
    fn shop(&self) -> &str {
        &self.shop
    }
}

/// Shops `[from, until)`; `None` is unbounded.
pub type ShopRange<'a> = (Option<&'a str>, Option<&'a str>);

/// Tables whose rows are sorted by (day, shop), input order kept within:
/// see [`DayOrdered::day_rows`].
#[derive(Debug, Default)]
pub struct DayOrdered(Tables);

impl DayOrdered {
    /// Sorts every table's rows (stably, so input order stays within a
    /// day and shop).
    pub fn new(mut t: Tables) -> DayOrdered {
        // By integer keys (the day, the shop's rank among the table's
        // distinct shops in byte order, the position: unique, so an
        // unstable sort is stable), then the rows moved into place.
        fn sort<R: Dated + Send + Sync>(t: &mut Option<Table<R>>) {
            let Some(t) = t else { return };
            let rows = &t.rows;
            let mut number: PlHashMap<&str, u32> = PlHashMap::default();
            let mut shops: Vec<&str> = Vec::new();
            let ids: Vec<u32> = rows
                .iter()
                .map(|r| {
                    *number.entry(r.shop()).or_insert_with(|| {
                        shops.push(r.shop());
                        shops.len() as u32 - 1
                    })
                })
                .collect();
            let mut by_name: Vec<u32> = (0..shops.len() as u32).collect();
            by_name.sort_unstable_by(|&a, &b| shops[a as usize].cmp(shops[b as usize]));
            let mut rank = vec![0u32; shops.len()];
            for (r, &i) in by_name.iter().enumerate() {
                rank[i as usize] = r as u32;
            }
            let mut keys: Vec<(i32, u32, u32)> = rows
                .iter()
                .zip(&ids)
                .enumerate()
                .map(|(i, (r, &id))| (r.day(), rank[id as usize], i as u32))
                .collect();
            drop((number, shops));
            keys.par_sort_unstable();
            permute(&mut t.rows, keys.into_iter().map(|k| k.2).collect());
        }
        // Side by side: each sort's numbering and moves are one thread's.
        let Tables {
            orders,
            refunds,
            complaints,
            ratings,
        } = &mut t;
        rayon::join(
            || rayon::join(|| sort(orders), || sort(refunds)),
            || rayon::join(|| sort(complaints), || sort(ratings)),
        );
        DayOrdered(t)
    }

    pub fn tables(&self) -> &Tables {
        &self.0
    }

    /// The rows of day `day` (as [`DayRows`]) of the shops of `shops`.
    pub fn day_rows(&self, day: i32, shops: ShopRange) -> DayRows<'_> {
        fn on<'t, R: Dated>(
            t: &'t Option<Table<R>>,
            days: &[i32],
            shops: ShopRange,
        ) -> Option<Vec<&'t R>> {
            t.as_ref().map(|t| {
                days.iter()
                    .flat_map(|&d| slice(&t.rows, d, shops))
                    .collect()
            })
        }
        let t = &self.0;
        DayRows {
            orders: on(&t.orders, &[day, day + 1], shops),
            refunds: on(&t.refunds, &[day], shops),
            complaints: on(&t.complaints, &[day], shops),
            ratings: on(&t.ratings, &[day], shops),
        }
    }
}

/// The rows of `day` whose shop lies in `shops`, of rows sorted by (day,
/// shop).
fn slice<'a, R: Dated>(rows: &'a [R], day: i32, (from, until): ShopRange<'_>) -> &'a [R] {
    // (day, shop) of a row against a bound: day first, then the shop.
    let below = |r: &R, shop: Option<&str>| match r.day().cmp(&day) {
        std::cmp::Ordering::Equal => shop.is_some_and(|s| r.shop().as_bytes() < s.as_bytes()),
        o => o.is_lt(),
    };
    let lo = rows.partition_point(|r| below(r, from));
    let hi = match until {
        Some(u) => rows.partition_point(|r| below(r, Some(u))),
        None => rows.partition_point(|r| r.day() <= day),
    };
    &rows[lo..hi.max(lo)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_matches_gathering() {
        let mut state = 7u64;
        for n in [0usize, 1, 2, 5, 64, 1000] {
            let rows: Vec<usize> = (0..n).map(|i| i * 10).collect();
            let mut order: Vec<u32> = (0..n as u32).collect();
            // A fixed pseudo-random shuffle (xorshift), so cycles of every length occur.
            for k in (1..n).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                order.swap(k, (state % (k as u64 + 1)) as usize);
            }
            let want: Vec<usize> = order.iter().map(|&i| rows[i as usize]).collect();
            let mut got = rows.clone();
            permute(&mut got, order);
            assert_eq!(got, want, "n = {n}");
        }
    }
    use crate::scorecard::LocalTime;

    fn rating(shop: &str, buyer: &str, day: i32) -> Rating {
        Rating {
            shop: shop.into(),
            buyer: buyer.into(),
            agent: String::new(),
            ts: LocalTime {
                utc: 0,
                day,
                tod: 0,
            },
            score: 5,
            resolved: true,
        }
    }

    /// A day's rows of a shop range, by binary search over the sorted
    /// table, are the rows a pass over the table in input order keeps, in
    /// the same order within each shop (and shops in byte order).
    #[test]
    fn day_rows_of_a_range_equal_a_filtering_pass() {
        let shops = ["", "a", "ab", "b", "b\0", "c", "客服"];
        let mut rows = Vec::new();
        let mut x = 7u64;
        for i in 0..400 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let shop = shops[(x >> 33) as usize % shops.len()];
            let day = 10 + ((x >> 20) % 4) as i32;
            rows.push(rating(shop, &format!("u{i}"), day));
        }
        let tables = Tables {
            ratings: Some(Table {
                rows: rows.clone(),
                stats: Default::default(),
            }),
            ..Default::default()
        };
        let ordered = DayOrdered::new(tables.clone());
        let bounds: Vec<Option<&str>> = [None, Some(""), Some("ab"), Some("b\0"), Some("zz")]
            .into_iter()
            .collect();
        for day in 9..15 {
            for from in &bounds {
                for until in &bounds {
                    let got: Vec<&Rating> = ordered.day_rows(day, (*from, *until)).ratings.unwrap();
                    let mut want: Vec<&Rating> = rows
                        .iter()
                        .filter(|r| r.ts.day == day)
                        .filter(|r| from.is_none_or(|f| r.shop.as_str() >= f))
                        .filter(|r| until.is_none_or(|u| r.shop.as_str() < u))
                        .collect();
                    want.sort_by(|a, b| a.shop.cmp(&b.shop));
                    assert_eq!(got, want, "day {day}, [{from:?}, {until:?})");
                }
            }
            let all = DayRows::filtered(day, &tables).ratings.unwrap();
            let mut all_sorted = all.clone();
            all_sorted.sort_by(|a, b| a.shop.cmp(&b.shop));
            assert_eq!(
                ordered.day_rows(day, (None, None)).ratings.unwrap(),
                all_sorted
            );
        }
    }
}
