//! Amounts of money as integer fen (SPEC §8.1, "Money is exact").
//!
//! An amount column holds yuan as a decimal, a float or an integer. Each
//! becomes fen by decimal arithmetic, never by multiplying floats: a
//! decimal's exact value × 100, a float's shortest round-trip decimal text
//! (Rust's `{}`, Python's `repr`) × 100, an integer × 100, then rounded half
//! away from zero. So 0.015 is 2 fen (the float 0.015 is a hair below 0.015,
//! but its text is `0.015`), 2.675 is 268 and 19.99 is 1999.

use polars::prelude::*;

/// The fen of one row: `Ok(None)` for a null, `Err(reason)` for a value
/// that is a bad row (NaN, infinite, negative, or beyond int64 fen).
pub type Fen = Result<Option<i64>, String>;

const TOO_LARGE: &str = "amount is too large (beyond int64 fen)";

/// The fen of every row of an amount column, in row order. `Err` when the
/// column's type cannot hold money (a message naming the type; the caller
/// adds the file and column).
pub fn fen_column(s: &Series) -> Result<Vec<Fen>, String> {
    let dtype = s.dtype().clone();
    let out = match &dtype {
        DataType::Float64 => s
            .f64()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|v| v.map(f64_to_fen).transpose())
            .collect(),
        DataType::Float32 => s
            .f32()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|v| v.map(f32_to_fen).transpose())
            .collect(),
        DataType::Decimal(_, scale) => {
            let ca = s.decimal().map_err(|e| e.to_string())?;
            ca.phys
                .iter()
                .map(|v| v.map(|v| decimal_to_fen(v, *scale)).transpose())
                .collect()
        }
        DataType::Null => vec![Ok(None); s.len()],
        dt if dt.is_unsigned_integer() => {
            let c = s.cast(&DataType::UInt64).map_err(|e| e.to_string())?;
            let ca = c.u64().map_err(|e| e.to_string())?;
            ca.iter()
                .map(|v| v.map(|v| int_to_fen(v as i128)).transpose())
                .collect()
        }
        dt if dt.is_integer() => {
            let c = s.cast(&DataType::Int64).map_err(|e| e.to_string())?;
            let ca = c.i64().map_err(|e| e.to_string())?;
            ca.iter()
                .map(|v| v.map(|v| int_to_fen(v as i128)).transpose())
                .collect()
        }
        dt => {
            return Err(format!(
                "has type {dt}; an amount must be a decimal, a float or an integer (yuan)"
            ))
        }
    };
    Ok(out)
}

/// Fen of an integer number of yuan.
pub fn int_to_fen(yuan: i128) -> Result<i64, String> {
    if yuan < 0 {
        return Err(format!("amount {yuan} is negative"));
    }
    yuan.checked_mul(100)
        .and_then(|f| i64::try_from(f).ok())
        .ok_or_else(|| TOO_LARGE.to_string())
}

/// Fen of a decimal: `unscaled` × 10^-`scale` yuan, exactly.
pub fn decimal_to_fen(unscaled: i128, scale: usize) -> Result<i64, String> {
    if unscaled < 0 {
        return Err("amount is negative".to_string());
    }
    let fen = if scale <= 2 {
        10i128
            .checked_pow(2 - scale as u32)
            .and_then(|m| unscaled.checked_mul(m))
    } else if scale - 2 > 38 {
        // 10^(scale-2) exceeds every i128: the value is below half a fen.
        Some(0)
    } else {
        let d = 10i128.pow((scale - 2) as u32);
        let (q, r) = (unscaled / d, unscaled % d);
        // Half away from zero: r ≥ d/2 rounds up (r ≤ d - 1, so 2r fits).
        Some(if r >= d - r { q + 1 } else { q })
    };
    fen.and_then(|f| i64::try_from(f).ok())
        .ok_or_else(|| TOO_LARGE.to_string())
}

/// Fen of a float, from its shortest round-trip text.
pub fn f64_to_fen(yuan: f64) -> Result<i64, String> {
    if !yuan.is_finite() {
        return Err(format!("amount is {yuan}"));
    }
    // A whole number of fen (most amounts): below 1e13 yuan the f64s are
    // closer together than 0.005, so when the nearest f64 to `c / 100` is
    // `yuan` itself, `c / 100` is its shortest round-trip text.
    let c = (yuan * 100.0).round();
    if (0.0..1e15).contains(&c) && c / 100.0 == yuan {
        return Ok(c as i64);
    }
    text_to_fen(&format!("{yuan}"))
}

/// Fen of a 32-bit float, from its own shortest round-trip text (so 0.1f32
/// is 10 fen, not the digits of its 64-bit widening).
pub fn f32_to_fen(yuan: f32) -> Result<i64, String> {
    if !yuan.is_finite() {
        return Err(format!("amount is {yuan}"));
    }
    text_to_fen(&format!("{yuan}"))
}

/// Fen of a decimal text such as `19.99`, `-0.5`, `100` or `1.5e-3`:
/// × 100, rounded half away from zero (only the third decimal decides it).
pub fn text_to_fen(text: &str) -> Result<i64, String> {
    let bad = || format!("amount `{text}` is not a decimal number");
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(k) => (&text[..k], text[k + 1..].parse::<i32>().map_err(|_| bad())?),
        None => (text, 0),
    };
    let (neg, digits) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    // All digits, with the decimal point `point` digits from the left.
    let all: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
    if neg && all.iter().any(|&d| d != 0) {
        return Err(format!("amount {text} is negative"));
    }
    // The fen point lies two digits right of the yuan point.
    let point = int.len() as i64 + exp as i64 + 2;
    let mut fen: i64 = 0;
    for k in 0..point.max(0) {
        let d = usize::try_from(k)
            .ok()
            .and_then(|k| all.get(k))
            .copied()
            .unwrap_or(0);
        fen = fen
            .checked_mul(10)
            .and_then(|f| f.checked_add(d as i64))
            .ok_or_else(|| TOO_LARGE.to_string())?;
    }
    // The first digit after the fen point decides the rounding.
    let next = if point < 0 {
        0
    } else {
        all.get(point as usize).copied().unwrap_or(0)
    };
    if next >= 5 {
        fen = fen.checked_add(1).ok_or_else(|| TOO_LARGE.to_string())?;
    }
    Ok(fen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_by_their_text() {
        for (yuan, fen) in [
            (0.015, 2),
            (19.99, 1999),
            (1e-3, 0),
            (0.005, 1),
            (0.0049, 0),
            (2.675, 268),
            (59.9, 5990),
            (0.0, 0),
            (-0.0, 0),
            (100.0, 10000),
            (1.005, 101),
            (0.1 + 0.2, 30), // 0.30000000000000004
            (92233720368547.0, 9223372036854700),
        ] {
            assert_eq!(f64_to_fen(yuan), Ok(fen), "{yuan}");
        }
        assert_eq!(f32_to_fen(0.1), Ok(10));
        assert_eq!(f32_to_fen(19.99), Ok(1999));
        assert_eq!(f32_to_fen(0.015), Ok(2));
    }

    /// The whole-fen shortcut of `f64_to_fen` agrees with the text path on
    /// whole fen, near misses, third decimals and large amounts.
    #[test]
    fn the_whole_fen_shortcut_agrees_with_the_text() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for k in 0..200_000 {
            let cents = match k % 4 {
                0 => next() % 100_000,
                1 => next() % 10_000_000_000,
                2 => next() % 1_000_000_000_000_000,
                _ => next() % 1000,
            };
            let yuan = match k % 3 {
                0 => cents as f64 / 100.0,
                1 => cents as f64 / 1000.0,
                _ => f64::from_bits((cents as f64 / 100.0).to_bits() + next() % 3),
            };
            let text = text_to_fen(&format!("{yuan}"));
            assert_eq!(f64_to_fen(yuan), text, "{yuan}");
        }
    }

    #[test]
    fn bad_floats() {
        for yuan in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.01,
            -5.0,
            1e20,
        ] {
            assert!(f64_to_fen(yuan).is_err(), "{yuan}");
        }
        assert!(f32_to_fen(f32::NAN).is_err());
        assert!(f64_to_fen(1e20).unwrap_err().contains("too large"));
    }

    #[test]
    fn texts() {
        for (t, fen) in [
            ("1.5e-3", 0),
            ("5e-3", 1),
            ("1.2345e2", 12345),
            ("1e2", 10000),
            (".5", 50),
            ("7.", 700),
            ("0.125", 13),
            ("0.124999", 12),
        ] {
            assert_eq!(text_to_fen(t), Ok(fen), "{t}");
        }
        for t in ["", ".", "abc", "1.2.3", "-1", "1e"] {
            assert!(text_to_fen(t).is_err(), "{t}");
        }
    }

    #[test]
    fn decimals_and_integers() {
        assert_eq!(decimal_to_fen(5990, 2), Ok(5990));
        assert_eq!(decimal_to_fen(15, 3), Ok(2)); // 0.015
        assert_eq!(decimal_to_fen(14, 3), Ok(1));
        assert_eq!(decimal_to_fen(2675, 3), Ok(268));
        assert_eq!(decimal_to_fen(7, 0), Ok(700));
        assert_eq!(decimal_to_fen(5, 1), Ok(50));
        assert_eq!(decimal_to_fen(1, 38), Ok(0));
        assert!(decimal_to_fen(-1, 2).is_err());
        assert!(decimal_to_fen(i128::MAX, 0).is_err());
        assert_eq!(int_to_fen(12), Ok(1200));
        assert!(int_to_fen(-1).is_err());
        assert!(int_to_fen(u64::MAX as i128).is_err());
    }

    #[test]
    fn columns() {
        let f = Series::new("a".into(), &[Some(0.015), None, Some(f64::NAN)]);
        let v = fen_column(&f).unwrap();
        assert_eq!(v[0], Ok(Some(2)));
        assert_eq!(v[1], Ok(None));
        assert!(v[2].is_err());
        let i = Series::new("a".into(), &[3i32, -1]);
        let v = fen_column(&i).unwrap();
        assert_eq!(v[0], Ok(Some(300)));
        assert!(v[1].is_err());
        // Unscaled 199900 and 15 at scale 3: 199.900 and 0.015 yuan.
        let d = Int128Chunked::from_slice("a".into(), &[199900, 15])
            .into_decimal_unchecked(10, 3)
            .into_series();
        let v = fen_column(&d).unwrap();
        assert_eq!(v, vec![Ok(Some(19990)), Ok(Some(2))]);
        let s = Series::new("a".into(), &["1.00"]);
        assert!(fen_column(&s)
            .unwrap_err()
            .contains("decimal, a float or an integer"));
    }
}
