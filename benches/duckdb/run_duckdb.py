#!/usr/bin/env python3
"""The DuckDB side of benches/compare.sh: one whole job in one process.

Reads the Parquet message table, computes the Pinduoduo shop_daily table of
one day with the hand-written query in pdd_shop_daily.sql, and writes it as
Parquet -- the same work `kefu run ... --no-items` does for shop_daily.

    run_duckdb.py --input FILE --day YYYY-MM-DD --output OUT.parquet [--threads N] [--scan-floor]
"""

import argparse
import pathlib
import sys

import duckdb

SQL_FILE = pathlib.Path(__file__).with_name("pdd_shop_daily.sql")
# --scan-floor: the same columns and rows, counted per shop (compare.sh's floor).
FLOOR_FILE = pathlib.Path(__file__).with_name("scan_floor.sql")


def query(input_path: str, day: str, sql_file: pathlib.Path = SQL_FILE) -> str:
    """The query text with its placeholders filled in."""
    sql = sql_file.read_text()
    sql = sql.replace("${INPUT}", input_path.replace("'", "''"))
    sql = sql.replace("${DAY}", day)
    return sql


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", required=True)
    ap.add_argument("--day", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--threads", type=int, default=None,
                    help="DuckDB threads (default: DuckDB's own, all cores)")
    ap.add_argument("--scan-floor", action="store_true",
                    help="run scan_floor.sql (rows and columns counted per shop) instead")
    args = ap.parse_args()

    con = duckdb.connect()  # in-memory database
    if args.threads:
        con.execute(f"SET threads = {args.threads}")
    out = args.output.replace("'", "''")
    con.execute(f"COPY ({query(args.input, args.day, FLOOR_FILE if args.scan_floor else SQL_FILE)}) TO '{out}' (FORMAT parquet)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
