#!/usr/bin/env python3
"""Self-check of benches/compare.sh: the hand-written DuckDB query and kefu
on a small hand-made table of edge cases, both against numbers worked out by
hand from SPEC §1-§3.

    edge_cases.py KEFU_BINARY WORK_DIR

Generated data (`kefu gen`) never has bad rows, ties between a buyer and a
reply, sub-millisecond timestamps or replies exactly at a threshold, so the
equality check on it alone would not show that the SQL (or kefu) handles
those. Each case below is its own shop, so its expected numbers can be read
off the rows. Exits 1 on any difference.
"""

import pathlib
import subprocess
import sys

import duckdb

from run_duckdb import query

DAY = "2024-05-16"
D0, D1, D2, DM1 = "2024-05-16", "2024-05-17", "2024-05-18", "2024-05-15"

# (shop, buyer, local time (Asia/Shanghai), sender, msg_id, auto, spam,
#  blocked, peer_kind). Row order = input order. None = null.
ROWS = []


def row(shop, buyer, t, sender, msg_id=None, auto=False, spam=False,
        blocked=False, peer="consumer"):
    ROWS.append((shop, buyer, t, sender, msg_id, auto, spam, blocked, peer))


# A. Tie: a reply with the inquiry's ts counts (buyer rows first), even when
#    it comes first in input order. Latency 0.
row("A", "b1", f"{D0} 10:00:00", "agent")
row("A", "b1", f"{D0} 10:00:00", "buyer")

# B. 180 s exactly passes, 180.001 s fails.
row("B", "b1", f"{D0} 10:00:00", "buyer")
row("B", "b1", f"{D0} 10:03:00", "agent")
row("B", "b2", f"{D0} 10:00:00", "buyer")
row("B", "b2", f"{D0} 10:03:00.001", "agent")

# C. 30 s exactly passes, 30.001 s fails; one buyer, both within 180 s.
row("C", "b1", f"{D0} 11:00:00", "buyer")
row("C", "b1", f"{D0} 11:00:30", "agent")
row("C", "b1", f"{D0} 11:05:00", "buyer")
row("C", "b1", f"{D0} 11:05:30.001", "agent")

# D. Hours 08:00-23:00, start inclusive, end exclusive.
row("D", "b1", f"{D0} 07:59:59.999", "buyer")           # out, unreplied
row("D", "b2", f"{D0} 08:00:00", "buyer")               # in
row("D", "b2", f"{D0} 08:00:10", "agent")
row("D", "b3", f"{D0} 22:59:59.999", "buyer")           # in
row("D", "b3", f"{D0} 23:00:09.999", "agent")
row("D", "b4", f"{D0} 23:00:00", "buyer")               # out, unreplied

# E. Horizon: a reply on D+1 is seen, one on D+2 is not.
row("E", "b1", f"{D0} 22:00:00", "buyer")
row("E", "b1", f"{D1} 23:59:59.999", "agent")
row("E", "b2", f"{D0} 22:00:00", "buyer")
row("E", "b2", f"{D2} 00:00:00", "agent")

# F. De-duplication per (shop, msg_id, local day), first in input order, before
#    the peer_kind filter; null msg_id never a duplicate.
row("F", "b1", f"{D0} 10:00:00", "buyer", "x", peer="sub_account")
row("F", "b1", f"{D0} 10:00:05", "buyer", "x")          # dup of a dropped row
row("F", "b1", f"{D0} 10:00:10", "agent", "y")
row("F", "b2", f"{D0} 12:00:00", "buyer", "z")
row("F", "b2", f"{D1} 09:00:00", "agent", "z")          # other day: kept
row("F", "b3", f"{D0} 13:00:00", "buyer")
row("F", "b3", f"{D0} 13:00:01", "buyer")
row("F", "b3", f"{D0} 13:00:20", "agent")
row("F", "b4", f"{D0} 14:00:00", "buyer", "q")
row("F", "b4", f"{D0} 14:00:10", "agent", "w", auto=True)
row("F", "b4", f"{D0} 14:00:20", "agent", "w")          # dup: b4 unreplied
row("F2", "b1", f"{D0} 10:00:00", "buyer", "x")         # other shop: kept
row("F2", "b1", f"{D0} 10:00:05", "agent", "x2")

# G. Flags: auto/spam/blocked buyer rows are no inquiries; null flags and
#    null peer_kind are defaults; auto agent, bot (even assist) and system
#    rows and non-consumer rows answer nothing.
row("G", "b1", f"{D0} 10:00:00", "buyer", auto=True)
row("G", "b2", f"{D0} 10:00:00", "buyer", spam=True)
row("G", "b3", f"{D0} 10:00:00", "buyer", blocked=True)
row("G", "b4", f"{D0} 10:00:00", "buyer", auto=None, spam=None, blocked=None, peer=None)
row("G", "b4", f"{D0} 10:00:05", "agent", auto=None, peer=None)
row("G", "b5", f"{D0} 10:00:00", "buyer")
row("G", "b5", f"{D0} 10:00:01", "bot")
row("G", "b5", f"{D0} 10:00:02", "agent", auto=True)
row("G", "b5", f"{D0} 10:00:03", "system")
row("G", "b5", f"{D0} 10:03:20", "agent")
row("G", "b6", f"{D0} 10:00:00", "buyer")
row("G", "b6", f"{D0} 10:00:01", "agent", peer="platform_staff")
row("G", "b6", f"{D0} 10:00:40", "agent")

# H. Bad rows are removed before de-duplication.
row("H", "b1", f"{D0} 10:00:00", "buyer", "m0")
row("H", "b1", f"{D0} 10:00:05", "robot", "m1")         # bad sender
row("H", "b1", f"{D0} 10:01:00", "agent", "m1")         # so this is kept
row("H", None, f"{D0} 10:00:00", "buyer")               # bad: null buyer
row("H", "b2", None, "buyer")                           # bad: null ts
row("H", "b3", f"{D0} 10:00:00", None)                  # bad: null sender
row(None, "b1", f"{D0} 10:00:00", "buyer")              # bad: null shop

# I. any_miss on the buyer unit: one late in-hours inquiry fails the buyer;
#    out-of-hours inquiries do not matter.
row("I", "b1", f"{D0} 09:00:00", "buyer")
row("I", "b1", f"{D0} 09:00:10", "agent")
row("I", "b1", f"{D0} 09:05:00", "buyer")
row("I", "b1", f"{D0} 09:10:00", "agent")
row("I", "b2", f"{D0} 07:00:00", "buyer")
row("I", "b2", f"{D0} 07:30:00", "agent")
row("I", "b2", f"{D0} 09:00:00", "buyer")
row("I", "b2", f"{D0} 09:00:30", "agent")

# J. Sub-millisecond timestamps are truncated before anything is compared.
row("J", "b1", f"{D0} 10:00:00.000900", "buyer")
row("J", "b1", f"{D0} 10:03:00.000100", "agent")         # 180000 ms: passes
row("J", "b2", f"{D0} 10:00:00.000100", "buyer")
row("J", "b2", f"{D0} 10:03:00.001000", "agent")         # 180001 ms: fails
row("J", "b3", f"{D0} 11:00:00.000500", "buyer")
row("J", "b3", f"{D0} 11:00:00.000200", "agent")         # same ms: a reply

# K. Inquiries of other days are not items of D.
row("K", "b1", f"{DM1} 23:00:00", "buyer")
row("K", "b1", f"{D0} 08:30:00", "agent")
row("K", "b1", f"{D1} 10:00:00", "buyer")

# N. Nothing replied: rates 0/n, no mean-latency row.
row("N", "b1", f"{D0} 10:00:00", "buyer")

# Padding: plain answered threads, so that bad rows stay a small share.
for i in range(40):
    row("P", f"b{i}", f"{D0} 15:00:00", "buyer")
    row("P", f"b{i}", f"{D0} 15:00:{i:02d}", "agent")

R3, R30, AVG = "pdd.manual_reply_rate_3m", "pdd.answer_rate_30s", "pdd.avg_manual_response"
EXPECTED = {
    ("A", R3): (1, 1), ("A", R30): (1, 1), ("A", AVG): (0, 1),
    ("B", R3): (1, 2), ("B", R30): (0, 2), ("B", AVG): (360001, 2),
    ("C", R3): (1, 1), ("C", R30): (1, 2), ("C", AVG): (60001, 2),
    ("D", R3): (2, 2), ("D", R30): (2, 2), ("D", AVG): (20000, 2),
    ("E", R3): (0, 2), ("E", R30): (0, 2), ("E", AVG): (93599999, 1),
    ("F", R3): (1, 3), ("F", R30): (2, 4), ("F", AVG): (75600000 + 20000 + 19000, 3),
    ("F2", R3): (1, 1), ("F2", R30): (1, 1), ("F2", AVG): (5000, 1),
    ("G", R3): (2, 3), ("G", R30): (1, 3), ("G", AVG): (5000 + 200000 + 40000, 3),
    ("H", R3): (1, 1), ("H", R30): (0, 1), ("H", AVG): (60000, 1),
    ("I", R3): (1, 2), ("I", R30): (2, 3), ("I", AVG): (10000 + 300000 + 30000, 3),
    ("J", R3): (2, 3), ("J", R30): (1, 3), ("J", AVG): (180000 + 180001 + 0, 3),
    ("N", R3): (0, 1), ("N", R30): (0, 1),
    ("P", R3): (40, 40), ("P", R30): (31, 40), ("P", AVG): (sum(range(40)) * 1000, 40),
}


def write_input(con, path):
    con.execute("""CREATE TABLE msgs (rn INTEGER, shop_id VARCHAR, buyer_id VARCHAR,
                   ts TIMESTAMPTZ, sender VARCHAR, msg_id VARCHAR, auto BOOLEAN,
                   spam BOOLEAN, blocked BOOLEAN, peer_kind VARCHAR)""")
    con.executemany(
        "INSERT INTO msgs VALUES (?, ?, ?, "
        "CAST(CAST(? AS VARCHAR) || '+08:00' AS TIMESTAMPTZ), ?, ?, ?, ?, ?, ?)",
        [(i, *r) for i, r in enumerate(ROWS)])
    # One thread, ORDER BY: the file's row order is the list's order.
    con.execute("SET threads = 1")
    con.execute(f"COPY (SELECT * EXCLUDE (rn) FROM msgs ORDER BY rn) TO '{path}' (FORMAT parquet)")


def main() -> int:
    kefu, work = sys.argv[1], pathlib.Path(sys.argv[2])
    work.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    data = work / "edge_cases.parquet"
    write_input(con, data)

    # The presets with a looser bad-row limit (a rule file without metrics).
    rules = work / "loose.toml"
    rules.write_text('timezone = "Asia/Shanghai"\nmax_bad_row_share = 0.5\n')
    out = work / "kefu_out"
    subprocess.run([kefu, "run", "--input", str(data), "--output", str(out),
                    "--platform", "pdd", "--date", DAY, "--rules", str(rules),
                    "--no-items"], check=True, stderr=subprocess.DEVNULL)
    kefu_rows = con.execute(
        "SELECT shop_id, metric, numerator, denominator FROM read_parquet(?, hive_partitioning = false)",
        [str(out / "shop_daily/platform=pdd" / f"dt={DAY}" / "part-0.parquet")]).fetchall()
    duck_rows = con.execute(
        f"SELECT shop_id, metric, numerator, denominator FROM ({query(str(data), DAY)})").fetchall()

    ok = True
    for name, got_rows in (("kefu", kefu_rows), ("duckdb", duck_rows)):
        got = {(s, m): (n, d) for s, m, n, d in got_rows}
        for key in sorted(set(got) | set(EXPECTED)):
            if got.get(key) != EXPECTED.get(key):
                ok = False
                print(f"edge case {key}: {name} {got.get(key)}, expected {EXPECTED.get(key)}")
    if not ok:
        print("edge cases: DIFFERENCES (see above)")
        return 1
    print(f"edge cases: kefu and duckdb both match the {len(EXPECTED)} hand-worked numbers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
