#!/usr/bin/env python3
"""The DuckDB side of benches/compare.sh: one whole job in one process.

Reads the Parquet message table, computes the Pinduoduo shop_daily table of
one day with the hand-written query in pdd_shop_daily.sql, and writes it as
Parquet -- the same work `kefu run ... --no-items` does for shop_daily.

    run_duckdb.py --input FILE --day YYYY-MM-DD --output OUT.parquet [--threads N]
"""

import argparse
import pathlib
import sys

import duckdb

SQL_FILE = pathlib.Path(__file__).with_name("pdd_shop_daily.sql")


def query(input_path: str, day: str) -> str:
    """The query text with its placeholders filled in."""
    sql = SQL_FILE.read_text()
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
    args = ap.parse_args()

    con = duckdb.connect()  # in-memory database
    if args.threads:
        con.execute(f"SET threads = {args.threads}")
    out = args.output.replace("'", "''")
    con.execute(f"COPY ({query(args.input, args.day)}) TO '{out}' (FORMAT parquet)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
