//! Stage 3, the bucket bounds: the shop ranges of the buckets, decided from
//! a sample of the first read, and the bucket of a shop, found fast.

use polars::prelude::{InitHashMaps, PlHashMap};

use super::clock::LocalClock;
use super::plan::{per_ms, FileRows};

/// The bucket bounds (the first `shop_id` of every bucket after the first)
/// from a sample: the shops of the sampled rows of the first read that lie
/// in the loaded days (`kept` of them, of `read` rows sampled, out of
/// `total` rows in the files). Buckets get about `bucket_rows` rows each if the rest of the
/// input is like the sample; a shop the sample missed falls in the range its
/// name sorts into.
fn sample_bounds<'a>(
    shops: impl Iterator<Item = &'a str>,
    read: u64,
    total: u64,
    bucket_rows: u64,
) -> Vec<String> {
    let mut per_shop: PlHashMap<&str, u64> = PlHashMap::new();
    let mut kept = 0u64;
    for s in shops {
        *per_shop.entry(s).or_default() += 1;
        kept += 1;
    }
    let expected = (total as f64 * kept as f64 / read.max(1) as f64).ceil() as u64;
    let buckets = expected.div_ceil(bucket_rows.max(1)).max(1);
    if buckets == 1 {
        return Vec::new();
    }
    let mut shops: Vec<(&str, u64)> = per_shop.into_iter().collect();
    shops.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let per_bucket = kept.div_ceil(buckets);
    let mut bounds = Vec::new();
    let mut acc = 0;
    for (shop, n) in shops {
        if acc >= per_bucket {
            bounds.push(shop.to_string());
            acc = 0;
        }
        acc += n;
    }
    bounds
}

/// The bucket bounds (the first `shop_id` of every bucket after the first),
/// with their first 8 bytes as big-endian integers (zero-padded), which
/// decide most comparisons without a call to `memcmp`.
pub(super) struct Bounds {
    names: Vec<String>,
    /// The bytes every name starts with (shop ids often share a long
    /// prefix, "shop0000…", which would leave [`Bounds::prefixes`] equal).
    common: Vec<u8>,
    /// The 8 bytes after `common` of each name ([`prefix8`]).
    prefixes: Vec<u64>,
}

impl Bounds {
    pub(super) fn new(names: Vec<String>) -> Bounds {
        let common: Vec<u8> = match names.first() {
            None => Vec::new(),
            Some(first) => {
                let mut l = first.len();
                for n in &names[1..] {
                    l = first.as_bytes()[..l]
                        .iter()
                        .zip(n.as_bytes())
                        .take_while(|(a, b)| a == b)
                        .count();
                }
                first.as_bytes()[..l].to_vec()
            }
        };
        let prefixes = names
            .iter()
            .map(|n| prefix8(&n.as_bytes()[common.len()..]))
            .collect();
        Bounds {
            names,
            common,
            prefixes,
        }
    }

    pub(super) fn buckets(&self) -> usize {
        self.names.len() + 1
    }

    /// The names: the first `shop_id` of every bucket after the first.
    pub(super) fn into_names(self) -> Vec<String> {
        self.names
    }

    /// The bucket of a shop: the number of bounds at or below it.
    #[inline]
    pub(super) fn bucket_of(&self, shop: &[u8]) -> usize {
        // Against the prefix every bound shares: a shop below it, or a
        // proper prefix of it, is below every bound; one above it is above.
        let l = self.common.len();
        if l > 0 {
            let n = shop.len().min(l);
            match shop[..n].cmp(&self.common[..n]) {
                std::cmp::Ordering::Less => return 0,
                std::cmp::Ordering::Greater => return self.names.len(),
                std::cmp::Ordering::Equal if shop.len() < l => return 0,
                std::cmp::Ordering::Equal => {}
            }
        }
        // The shop and every bound start with `common`: their rests order
        // them.
        let rest = &shop[l..];
        let p = prefix8(rest);
        let (mut lo, mut hi) = (0, self.names.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            // Zero-padded prefixes that differ order their strings the same
            // way; equal ones need the whole strings.
            let at_or_below = match self.prefixes[mid].cmp(&p) {
                std::cmp::Ordering::Less => true,
                std::cmp::Ordering::Greater => false,
                std::cmp::Ordering::Equal => &self.names[mid].as_bytes()[l..] <= rest,
            };
            if at_or_below {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// The first 8 bytes of `b`, zero-padded, as a big-endian integer.
#[inline]
fn prefix8(b: &[u8]) -> u64 {
    let mut x = [0u8; 8];
    let n = b.len().min(8);
    x[..n].copy_from_slice(&b[..n]);
    u64::from_be_bytes(x)
}

/// The bucket bounds from the first read (see [`sample_bounds`]): the shops
/// of up to about 256K of its rows, evenly spaced, that lie in the loaded
/// days; `None` when none does.
pub(super) fn bounds_from_read(
    part: &FileRows,
    clock: &LocalClock,
    (first, last): (i32, i32),
    total: u64,
    bucket_rows: u64,
) -> Option<Vec<String>> {
    let df = &part.df;
    let shop = df
        .column("shop_id")
        .ok()?
        .as_materialized_series()
        .str()
        .ok()?;
    let ts = df
        .column("ts")
        .ok()?
        .as_materialized_series()
        .datetime()
        .ok()?;
    let n = df.height();
    let stride = n.div_ceil(1 << 18).max(1);
    let per_ms = per_ms(part.unit);
    let in_days = |t: Option<i64>| -> Option<()> {
        let (_, d, _) = clock.row_time(t?, per_ms, part.tz_aware)?;
        (first..=last).contains(&d).then_some(())
    };
    let ts = ts.physical();
    let sample = |stride: usize| -> Vec<&str> {
        (0..n)
            .step_by(stride)
            .filter_map(|i| {
                in_days(ts.get(i))?;
                shop.get(i)
            })
            .collect()
    };
    let mut shops = sample(stride);
    let mut sampled = n.div_ceil(stride) as u64;
    if shops.is_empty() && stride > 1 {
        // The sample missed the few rows in the days, if any: look at all.
        shops = sample(1);
        sampled = n as u64;
    }
    if shops.is_empty() {
        return None;
    }
    Some(sample_bounds(
        shops.into_iter(),
        sampled,
        total,
        bucket_rows,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The prefix comparison finds the same bucket as comparing whole
    /// strings, for names that share prefixes (with each other or all of
    /// them), hold zero bytes or are shorter than 8 bytes.
    #[test]
    fn bucket_of_agrees_with_whole_string_comparison() {
        let alphabet: &[&str] = &[
            "",
            "\0",
            "a",
            "a\0",
            "ab",
            "shop0000",
            "shop00001",
            "shop0000\0",
        ];
        let mut names: Vec<String> = Vec::new();
        for a in alphabet {
            for b in alphabet {
                names.push(format!("{a}{b}"));
            }
        }
        names.sort();
        names.dedup();
        // Bounds of every kind, and bounds sharing a prefix (long, short,
        // one of them the prefix itself).
        let sharing = |p: &str| -> Vec<String> {
            names.iter().filter(|n| n.starts_with(p)).cloned().collect()
        };
        let mut choices: Vec<Vec<String>> = Vec::new();
        for step in [1, 2, 3, 5] {
            choices.push(names.iter().skip(1).step_by(step).cloned().collect());
            for p in ["shop0000", "a", "ab", "\0"] {
                choices.push(sharing(p).into_iter().step_by(step).collect());
            }
        }
        choices.push(vec!["shop0000".to_string()]);
        choices.push(vec!["shop0000".to_string(), "shop00001".to_string()]);
        choices.push(Vec::new());
        for chosen in choices {
            let bounds = Bounds::new(chosen.clone());
            let probes = ["sho", "shop", "shop0001", "shoq", "shop000", "z", "a\0\0"];
            for shop in names.iter().map(String::as_str).chain(probes) {
                let naive = chosen.partition_point(|b| b.as_bytes() <= shop.as_bytes());
                assert_eq!(
                    bounds.bucket_of(shop.as_bytes()),
                    naive,
                    "{shop:?} with {chosen:?}"
                );
            }
        }
    }
}
