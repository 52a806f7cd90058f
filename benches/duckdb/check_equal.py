#!/usr/bin/env python3
"""Equality check of benches/compare.sh: kefu's shop_daily against DuckDB's.

    check_equal.py KEFU_SHOP_DAILY.parquet DUCKDB.parquet

Compares (shop_id, metric, numerator, denominator) row by row, exactly. On
any difference -- a row on one side only, a different numerator or
denominator, a repeated key -- prints the differing rows and exits 1.
Prints a one-line summary and exits 0 when the tables are identical.
"""

import sys

import duckdb


def table(path: str) -> str:
    p = path.replace("'", "''")
    # hive_partitioning off: kefu's file sits under platform=/dt= folders.
    return (f"(SELECT shop_id, metric, numerator, denominator "
            f"FROM read_parquet('{p}', hive_partitioning = false))")


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    kefu, duck = table(sys.argv[1]), table(sys.argv[2])
    con = duckdb.connect()
    ok = True

    for name, t in (("kefu", kefu), ("duckdb", duck)):
        dups = con.execute(f"SELECT shop_id, metric, count(*) AS n FROM {t} "
                           f"GROUP BY ALL HAVING n > 1 ORDER BY ALL").fetchall()
        if dups:
            ok = False
            print(f"{name}: {len(dups)} repeated (shop_id, metric) keys, e.g. {dups[:5]}")

    con.execute(f"""
        CREATE TEMP TABLE diff AS
        SELECT coalesce(k.shop_id, d.shop_id) AS shop_id,
               coalesce(k.metric, d.metric)   AS metric,
               k.numerator   AS kefu_numerator,   d.numerator   AS duckdb_numerator,
               k.denominator AS kefu_denominator, d.denominator AS duckdb_denominator
        FROM {kefu} k FULL OUTER JOIN {duck} d
          ON k.shop_id = d.shop_id AND k.metric = d.metric
        WHERE k.shop_id IS NULL OR d.shop_id IS NULL
           OR k.numerator   IS DISTINCT FROM d.numerator
           OR k.denominator IS DISTINCT FROM d.denominator
    """)
    diff = con.execute("SELECT * FROM diff ORDER BY shop_id, metric").fetchall()
    if diff:
        ok = False
        print(f"{len(diff)} differing (shop_id, metric) rows (None = row absent on that side):")
        print("shop_id, metric: kefu numerator/denominator vs duckdb numerator/denominator")
        for shop, metric, kn, dn, kd, dd in diff[:50]:
            print(f"  {shop}, {metric}: kefu {kn}/{kd} vs duckdb {dn}/{dd}")
        if len(diff) > 50:
            print(f"  ... and {len(diff) - 50} more")
        per_metric = con.execute("SELECT metric, count(*) FROM diff GROUP BY ALL ORDER BY ALL").fetchall()
        print("differing rows per metric: " + ", ".join(f"{m} {n}" for m, n in per_metric))

    summary = con.execute(f"SELECT count(*), count(DISTINCT shop_id), "
                          f"sum(numerator), sum(denominator) FROM {kefu}").fetchall()[0]
    if summary[0] == 0:
        ok = False
        print("kefu's shop_daily is empty: nothing was compared")
    if not ok:
        print("NOT IDENTICAL")
        return 1
    rows, shops, num, den = summary
    print(f"identical: {rows} rows, {shops} shops "
          f"(sum numerator {num}, sum denominator {den})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
