//! Stage 3, the row codec: how a kept row is encoded into its bucket
//! ([`encode_row`]) and parsed back when the bucket is built
//! ([`parse_row`]), and [`Key`], the string key of the build's hash tables.
//!
//! A row is: ts (i64, UTC), sender (u8), flags (u8), a null mask (u8, bit j
//! for key column j), then each non-null key string as a length (one byte,
//! or 0xFF and a u32) and its bytes; little-endian. Its local day and time
//! of day come from `ts` through the read's clock when it is parsed.

use crate::error::{Error, Result};
use crate::model::Sender;

use super::clock::LocalClock;

/// A string key of the bucket build's hash tables: bytes compared with a
/// few word loads instead of a call to `memcmp` (ids are mostly short).
#[derive(Clone, Copy, Debug, Eq)]
pub(super) struct Key<'a>(pub(super) &'a [u8]);

impl PartialEq for Key<'_> {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.0, other.0);
        let n = a.len();
        if n != b.len() {
            return false;
        }
        let word = |x: &[u8], at: usize| u64::from_ne_bytes(x[at..at + 8].try_into().expect("8"));
        let half = |x: &[u8], at: usize| u32::from_ne_bytes(x[at..at + 4].try_into().expect("4"));
        match n {
            // First and last 8 (or 4) bytes, overlapping: every byte is in one.
            8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
            4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
            0..=3 => a.iter().zip(b).all(|(x, y)| x == y),
            _ => a == b,
        }
    }
}

impl std::hash::Hash for Key<'_> {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(self.0);
    }
}

/// One encoded row, parsed (see the layout in the module's comment).
pub(super) struct Row<'a> {
    pub(super) ts: i64,
    /// The local day (the time of day is asked of the clock when the
    /// columns are built).
    pub(super) day: i32,
    pub(super) sender: Sender,
    pub(super) flags: u8,
    pub(super) shop: &'a [u8],
    pub(super) buyer: &'a [u8],
    pub(super) msg: Option<&'a [u8]>,
    pub(super) agent: Option<&'a [u8]>,
    pub(super) session: Option<&'a [u8]>,
}

/// The error of an encoded row that does not parse.
pub(super) fn corrupt_spill() -> Error {
    Error::Io("a spill file is corrupt (was it changed while kefu ran?)".into())
}

/// Appends one encoded row (the layout [`parse_row`] reads): UTC `ts`,
/// sender code, flags, a null mask, then shop_id, buyer_id, msg_id,
/// agent_id and session_id, each non-null one length-prefixed. The local
/// day and time of day are not kept: the read's [`LocalClock`] gives them
/// again from `ts` (8 bytes a row less to hold and spill).
#[inline]
pub(super) fn encode_row(
    buf: &mut Vec<u8>,
    utc: i64,
    sender: u8,
    flags: u8,
    vals: &[Option<&str>; 5],
) {
    buf.extend_from_slice(&utc.to_le_bytes());
    buf.push(sender);
    buf.push(flags);
    let mut nulls = 0u8;
    for (j, v) in vals.iter().enumerate() {
        if v.is_none() {
            nulls |= 1 << j;
        }
    }
    buf.push(nulls);
    for v in vals.iter().flatten() {
        let bytes = v.as_bytes();
        if bytes.len() < 0xFF {
            buf.push(bytes.len() as u8);
        } else {
            buf.push(0xFF);
            buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        }
        buf.extend_from_slice(bytes);
    }
}

/// Parses the encoded row at `bytes[*p..]` and moves `*p` past it.
///
/// The local day comes from `clock` (zero without one, for a pass that
/// needs only the row's extent and keys).
#[inline]
pub(super) fn parse_row<'a>(
    bytes: &'a [u8],
    p: &mut usize,
    clock: Option<&LocalClock>,
) -> Result<Row<'a>> {
    let take = |p: &mut usize, n: usize| -> Result<&'a [u8]> {
        let s = bytes.get(*p..*p + n).ok_or_else(corrupt_spill)?;
        *p += n;
        Ok(s)
    };
    let fixed = take(p, 11)?;
    let sender = match fixed[8] {
        0 => Sender::Buyer,
        1 => Sender::Agent,
        2 => Sender::Bot,
        3 => Sender::System,
        _ => return Err(corrupt_spill()),
    };
    let nulls = fixed[10];
    let mut keys: [Option<&[u8]>; 5] = [None; 5];
    for (j, k) in keys.iter_mut().enumerate() {
        if nulls & (1 << j) != 0 {
            continue;
        }
        let mut len = take(p, 1)?[0] as usize;
        if len == 0xFF {
            len = u32::from_le_bytes(take(p, 4)?.try_into().expect("4 bytes")) as usize;
        }
        *k = Some(take(p, len)?);
    }
    let [Some(shop), Some(buyer), msg, agent, session] = keys else {
        return Err(corrupt_spill());
    };
    let ts = i64::from_le_bytes(fixed[0..8].try_into().expect("8 bytes"));
    let day = clock.map_or(0, |c| c.day_tod(ts).0);
    Ok(Row {
        ts,
        day,
        sender,
        flags: fixed[9],
        shop,
        buyer,
        msg,
        agent,
        session,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Key equality is byte equality, at every length around the word sizes.
    #[test]
    fn key_equality_is_byte_equality() {
        let base: Vec<u8> = (0u8..40).map(|b| b.wrapping_mul(37)).collect();
        for n in 0..40 {
            let a = &base[..n];
            assert_eq!(Key(a), Key(&base.clone()[..n]));
            for k in 0..n {
                let mut other = a.to_vec();
                other[k] ^= 1;
                assert_ne!(Key(a), Key(&other), "length {n}, byte {k}");
            }
            if n > 0 {
                assert_ne!(Key(a), Key(&base[..n - 1]));
            }
        }
    }
}
