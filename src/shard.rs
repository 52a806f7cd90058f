//! `--shard I/N`: split a run by shop so that N machines, each computing the
//! shops of its shard, together write exactly what one machine would.
//!
//! A shop belongs to shard `fnv1a64(shop_id bytes) mod N`, a hash anyone can
//! reproduce (64-bit FNV-1a: offset 0xcbf29ce484222325, prime 0x100000001b3).
//! Every metric is computed per shop, so a shard's rows are exactly the
//! unsharded rows of its shops. Each shard writes its own files in every
//! partition (`part-I-of-N.parquet`, `_manifest-I-of-N.json`); the union of
//! a partition's files is the table.

use std::fmt;

/// Which part of the shops a run computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// The whole run: every shop, files named as in SPEC §5.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Parses `I/N` with 0 <= I < N <= 4096.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let bad = || format!("`{s}` is not I/N with 0 <= I < N <= 4096 (e.g. 0/4)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || count > 4096 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    pub fn is_whole(self) -> bool {
        self.count == 1
    }

    /// Whether this shard computes `shop_id`. A null shop (a bad row) is
    /// counted by shard 0 only.
    pub fn owns(self, shop_id: Option<&str>) -> bool {
        match shop_id {
            _ if self.count == 1 => true,
            None => self.index == 0,
            Some(s) => fnv1a64(s.as_bytes()) % u64::from(self.count) == u64::from(self.index),
        }
    }

    /// The partition data file this shard writes.
    pub fn data_file(self) -> String {
        if self.is_whole() {
            "part-0.parquet".into()
        } else {
            format!("part-{}-of-{}.parquet", self.index, self.count)
        }
    }

    /// The partition manifest this shard writes.
    pub fn manifest_file(self) -> String {
        if self.is_whole() {
            "_manifest.json".into()
        } else {
            format!("_manifest-{}-of-{}.json", self.index, self.count)
        }
    }

    /// The output lock this shard takes: shards of one run may write the
    /// same output at once, two runs of the same shard may not.
    pub fn lock_file(self) -> String {
        if self.is_whole() {
            ".kefu.lock".into()
        } else {
            format!(".kefu-{}-of-{}.lock", self.index, self.count)
        }
    }

    /// Whether `name` is a data or manifest file kefu writes under another
    /// shard count than this one's (a partition must hold one sharding).
    pub fn is_other_sharding(self, name: &str) -> bool {
        let count_of = |rest: &str, ext: &str| -> Option<u32> {
            let body = rest.strip_suffix(ext)?;
            let (i, n) = body.split_once("-of-")?;
            i.parse::<u32>().ok()?;
            n.parse::<u32>().ok()
        };
        let count = if name == "part-0.parquet" || name == "_manifest.json" {
            Some(1)
        } else if let Some(rest) = name.strip_prefix("part-") {
            count_of(rest, ".parquet")
        } else if let Some(rest) = name.strip_prefix("_manifest-") {
            count_of(rest, ".json")
        } else {
            None
        };
        count.is_some_and(|c| c != self.count)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// 64-bit FNV-1a.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_names() {
        assert_eq!(Shard::parse("1/3").unwrap(), Shard { index: 1, count: 3 });
        for bad in ["3/3", "0/0", "x/2", "1", "-1/2", "0/5000"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let s = Shard { index: 1, count: 3 };
        assert_eq!(s.data_file(), "part-1-of-3.parquet");
        assert_eq!(Shard::WHOLE.data_file(), "part-0.parquet");
        assert!(s.is_other_sharding("part-0.parquet"));
        assert!(s.is_other_sharding("_manifest-0-of-2.json"));
        assert!(!s.is_other_sharding("part-2-of-3.parquet"));
        assert!(!s.is_other_sharding("notes.txt"));
        assert!(Shard::WHOLE.is_other_sharding("part-0-of-2.parquet"));
    }

    #[test]
    fn fnv_known_values_and_every_shop_in_one_shard() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        for shop in ["s1", "shop00042", "店铺", ""] {
            let owners = (0..5)
                .filter(|&i| Shard { index: i, count: 5 }.owns(Some(shop)))
                .count();
            assert_eq!(owners, 1, "{shop}");
        }
        assert!(Shard { index: 0, count: 2 }.owns(None));
        assert!(!Shard { index: 1, count: 2 }.owns(None));
    }
}
