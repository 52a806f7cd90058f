//! Stage 3, the rules of SPEC §1 for one read row, as pure functions of
//! plain values: whether it is bad (and why), and for a kept row its sender
//! code and flags. The read (`read` module) calls them row by row, in its
//! hot loop: everything here is `#[inline]` and allocates nothing.

use std::collections::BTreeMap;
use std::fmt;

use crate::model::{flag, Sender};

/// A bit of the encoded flags: the row's peer is not a consumer.
pub(super) const NON_CONSUMER: u8 = 0x80;

/// The values of a read row that decide whether it is bad.
#[derive(Clone, Copy, Debug)]
pub(super) struct RowValues<'a> {
    pub(super) shop: Option<&'a str>,
    pub(super) buyer: Option<&'a str>,
    /// `ts` as stored (`None`: null).
    pub(super) raw_ts: Option<i64>,
    /// `ts` as (UTC ms, local day, local ms after midnight); `None` when
    /// null or outside 1900-2200.
    pub(super) time: Option<(i64, i32, i32)>,
    pub(super) sender: Option<&'a str>,
}

/// Why a row is bad.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BadRow<'a> {
    NullShop,
    NullBuyer,
    NullTs,
    TsOutOfRange,
    NullSender,
    /// The sender value, after `[input.sender_values]`.
    UnknownSender(&'a str),
}

impl fmt::Display for BadRow<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadRow::NullShop => f.write_str("shop_id is null"),
            BadRow::NullBuyer => f.write_str("buyer_id is null"),
            BadRow::NullTs => f.write_str("ts is null"),
            BadRow::TsOutOfRange => f.write_str("ts is before 1900 or after 2200"),
            BadRow::NullSender => f.write_str("sender is null"),
            BadRow::UnknownSender(v) => {
                write!(f, "sender `{v}` is not buyer, agent, bot or system")
            }
        }
    }
}

/// What [`classify`] makes of a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome<'a> {
    Bad(BadRow<'a>),
    /// A good row: its UTC `ts`, local day and sender code.
    Kept {
        utc: i64,
        day: i32,
        sender: u8,
    },
}

/// The sender codes of a read: `[input.sender_values]` (matched exactly;
/// unmapped values pass through), then the four values. The codes of a few
/// values seen are remembered, so that most rows cost one comparison or
/// two (a memo only: the answer is [`sender_code`]'s).
pub(super) struct SenderCodes<'a> {
    values: &'a BTreeMap<String, String>,
    seen: Vec<(&'a str, u8)>,
}

impl<'a> SenderCodes<'a> {
    pub(super) fn new(values: &'a BTreeMap<String, String>) -> SenderCodes<'a> {
        SenderCodes {
            values,
            seen: Vec::new(),
        }
    }

    /// The value `v` is read as.
    #[inline]
    pub(super) fn mapped(&self, v: &'a str) -> &'a str {
        self.values.get(v).map(String::as_str).unwrap_or(v)
    }

    /// The code of value `v` ([`Sender`] as u8), or `u8::MAX` for a value
    /// outside the four.
    #[inline]
    pub(super) fn code(&mut self, v: &'a str) -> u8 {
        match self.seen.iter().find(|(s, _)| *s == v) {
            Some(&(_, code)) => code,
            None => {
                let code = sender_code(self.mapped(v));
                if self.seen.len() < 16 {
                    self.seen.push((v, code));
                }
                code
            }
        }
    }
}

/// The code of a sender value (after the mapping), `u8::MAX` for one
/// outside the four.
#[inline]
pub(super) fn sender_code(mapped: &str) -> u8 {
    match mapped {
        "buyer" => Sender::Buyer as u8,
        "agent" => Sender::Agent as u8,
        "bot" => Sender::Bot as u8,
        "system" => Sender::System as u8,
        _ => u8::MAX,
    }
}

/// Whether a row is bad, and why (the first reason in this order: null
/// shop_id, null buyer_id, null or out-of-range `ts`, null sender, sender
/// outside the four values), or kept with its time and sender code.
#[inline]
pub(super) fn classify<'a>(row: &RowValues<'a>, senders: &mut SenderCodes<'a>) -> Outcome<'a> {
    if row.shop.is_none() {
        return Outcome::Bad(BadRow::NullShop);
    }
    if row.buyer.is_none() {
        return Outcome::Bad(BadRow::NullBuyer);
    }
    let Some((utc, day, _)) = row.time else {
        return Outcome::Bad(if row.raw_ts.is_none() {
            BadRow::NullTs
        } else {
            BadRow::TsOutOfRange
        });
    };
    let Some(sv) = row.sender else {
        return Outcome::Bad(BadRow::NullSender);
    };
    let code = senders.code(sv);
    if code == u8::MAX {
        return Outcome::Bad(BadRow::UnknownSender(senders.mapped(sv)));
    }
    Outcome::Kept {
        utc,
        day,
        sender: code,
    }
}

/// The flags of a kept row: of `auto`, `assist`, `spam` and `blocked` (in
/// [`FLAG_BITS`] order), those true (null or absent is false), and
/// [`NON_CONSUMER`] when `peer_kind` is present and not `consumer` (null or
/// absent is `consumer`).
#[inline]
pub(super) fn flags(values: [Option<bool>; 4], peer: Option<&str>) -> u8 {
    let mut f = 0u8;
    for (bit, v) in FLAG_BITS.iter().zip(values) {
        if v == Some(true) {
            f |= bit;
        }
    }
    if peer.is_some_and(|p| p != "consumer") {
        f |= NON_CONSUMER;
    }
    f
}

/// The boolean columns and their flag bits, in the order [`flags`] takes
/// their values.
pub(super) const FLAG_COLUMNS: [&str; 4] = ["auto", "assist", "spam", "blocked"];
pub(super) const FLAG_BITS: [u8; 4] = [flag::AUTO, flag::ASSIST, flag::SPAM, flag::BLOCKED];

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: RowValues<'static> = RowValues {
        shop: Some("s1"),
        buyer: Some("b1"),
        raw_ts: Some(1_715_800_000_000),
        time: Some((1_715_800_000_000, 19859, 1000)),
        sender: Some("buyer"),
    };

    fn run(row: RowValues<'_>, map: &[(&str, &str)]) -> String {
        let values: BTreeMap<String, String> = map
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let mut senders = SenderCodes::new(&values);
        // Twice: the memo gives the same answer.
        let a = format!("{:?}", classify(&row, &mut senders));
        let b = format!("{:?}", classify(&row, &mut senders));
        assert_eq!(a, b);
        a
    }

    fn bad(why: BadRow<'_>) -> String {
        format!("{:?}", Outcome::Bad(why))
    }

    #[test]
    fn a_good_row_is_kept_with_its_time_and_sender() {
        for (v, code) in [
            ("buyer", Sender::Buyer),
            ("agent", Sender::Agent),
            ("bot", Sender::Bot),
            ("system", Sender::System),
        ] {
            let row = RowValues {
                sender: Some(v),
                ..GOOD
            };
            let kept = Outcome::Kept {
                utc: 1_715_800_000_000,
                day: 19859,
                sender: code as u8,
            };
            assert_eq!(run(row, &[]), format!("{kept:?}"));
        }
    }

    #[test]
    fn null_shop_buyer_or_ts_is_bad_in_that_order() {
        let cases = [
            (
                RowValues {
                    shop: None,
                    buyer: None,
                    ..GOOD
                },
                BadRow::NullShop,
                "shop_id is null",
            ),
            (
                RowValues {
                    buyer: None,
                    time: None,
                    ..GOOD
                },
                BadRow::NullBuyer,
                "buyer_id is null",
            ),
            (
                RowValues {
                    raw_ts: None,
                    time: None,
                    sender: None,
                    ..GOOD
                },
                BadRow::NullTs,
                "ts is null",
            ),
        ];
        for (row, why, text) in cases {
            assert_eq!(run(row, &[]), bad(why));
            assert_eq!(why.to_string(), text);
        }
    }

    #[test]
    fn ts_outside_1900_to_2200_is_bad() {
        let row = RowValues { time: None, ..GOOD };
        assert_eq!(run(row, &[]), bad(BadRow::TsOutOfRange));
        assert_eq!(
            BadRow::TsOutOfRange.to_string(),
            "ts is before 1900 or after 2200"
        );
    }

    #[test]
    fn a_sender_outside_the_four_values_is_bad() {
        let row = RowValues {
            sender: None,
            ..GOOD
        };
        assert_eq!(run(row, &[]), bad(BadRow::NullSender));
        for v in ["robot", "Buyer", "buyer ", ""] {
            let row = RowValues {
                sender: Some(v),
                ..GOOD
            };
            assert_eq!(run(row, &[]), bad(BadRow::UnknownSender(v)));
        }
        assert_eq!(
            BadRow::UnknownSender("robot").to_string(),
            "sender `robot` is not buyer, agent, bot or system"
        );
    }

    #[test]
    fn sender_values_are_remapped_exactly_and_unmapped_ones_pass() {
        let map = [("1", "buyer"), ("2", "agent"), ("客服", "robot")];
        let sender = |v| RowValues {
            sender: Some(v),
            ..GOOD
        };
        let kept = |code: Sender| {
            format!(
                "{:?}",
                Outcome::Kept {
                    utc: 1_715_800_000_000,
                    day: 19859,
                    sender: code as u8
                }
            )
        };
        assert_eq!(run(sender("1"), &map), kept(Sender::Buyer));
        assert_eq!(run(sender("2"), &map), kept(Sender::Agent));
        assert_eq!(run(sender("bot"), &map), kept(Sender::Bot));
        assert_eq!(run(sender("3"), &map), bad(BadRow::UnknownSender("3")));
        // The reason names the value as mapped.
        assert_eq!(
            run(sender("客服"), &map),
            bad(BadRow::UnknownSender("robot"))
        );
        assert_eq!(run(sender(" 1"), &map), bad(BadRow::UnknownSender(" 1")));
    }

    #[test]
    fn a_peer_other_than_consumer_is_flagged_non_consumer() {
        assert_eq!(flags([None; 4], None), 0);
        assert_eq!(flags([None; 4], Some("consumer")), 0);
        assert_eq!(flags([None; 4], Some("sub_account")), NON_CONSUMER);
        assert_eq!(flags([None; 4], Some("platform_staff")), NON_CONSUMER);
        assert_eq!(flags([None; 4], Some("")), NON_CONSUMER);
    }

    #[test]
    fn flags_are_set_only_by_true_and_default_to_false_on_null() {
        assert_eq!(flags([Some(false); 4], None), 0);
        assert_eq!(flags([None; 4], None), 0);
        for (k, bit) in FLAG_BITS.iter().enumerate() {
            let mut v = [None; 4];
            v[k] = Some(true);
            assert_eq!(flags(v, None), *bit, "{}", FLAG_COLUMNS[k]);
            v[(k + 1) % 4] = Some(false);
            assert_eq!(flags(v, Some("consumer")), *bit);
        }
        assert_eq!(
            flags([Some(true); 4], Some("sub_account")),
            flag::AUTO | flag::ASSIST | flag::SPAM | flag::BLOCKED | NON_CONSUMER
        );
    }
}
