"""Parity of `kefu sql` on local Spark with `kefu run` (native): shop_daily
and shop_rolling.

Usage: parity.py CASES_FILE
CASES_FILE lines: name<TAB>sql_file<TAB>native_out<TAB>spark_out<TAB>platform<TAB>dates(comma-separated)
(sql_file `-`: the Spark output is already written, e.g. by `kefu run --engine spark`)
Runs every script in one local Spark session, then compares the shop_daily
and shop_rolling rows (shop_id, metric, numerator, denominator, rule_version,
window_days; value to 1e-12) per dt of the run. Exit 1 on any difference.
"""
import glob
import os
import re
import sys
import time

import pyarrow.parquet as pq
from pyspark.sql import SparkSession

KEYS = {
    "shop_daily": ("shop_id", "metric", "numerator", "denominator", "rule_version"),
    "shop_rolling": ("shop_id", "metric", "numerator", "denominator", "rule_version", "window_days"),
}


def statements(text):
    for st in re.split(r";[ \t]*\n", text + "\n"):
        body = "\n".join(l for l in st.splitlines() if not l.strip().startswith("--")).strip()
        body = body.rstrip(";").strip()
        if body:
            yield body


def rows(root, table, platform, dt):
    out = []
    d = os.path.join(root, table, f"platform={platform}", f"dt={dt}")
    for f in sorted(glob.glob(os.path.join(d, "*.parquet"))):
        t = pq.read_table(f).to_pylist()
        out.extend(t)
    return out


def main():
    cases = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
    spark = None
    if any(c[1] != "-" for c in cases):
        spark = (
            SparkSession.builder.master("local[2]")
            .appName("kefu-parity")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "4")
            .config("spark.driver.memory", "2g")
            .getOrCreate()
        )
        spark.sparkContext.setLogLevel("ERROR")
    failures = 0
    for name, sql_file, native_out, spark_out, platform, dates in cases:
        started = time.time()
        if sql_file != "-":
            for st in statements(open(sql_file).read()):
                spark.sql(st).collect()
        total = 0
        rolling = 0
        bad = []
        for table, dt in [(t, d) for t in KEYS for d in dates.split(",")]:
            key = KEYS[table]
            a = rows(native_out, table, platform, dt)
            b = rows(spark_out, table, platform, dt)
            total += len(a)
            if table == "shop_rolling":
                rolling += len(a)
            dt = f"{table} {dt}"
            ka = {tuple(r[k] for k in key): r["value"] for r in a}
            kb = {tuple(r[k] for k in key): r["value"] for r in b}
            if len(ka) != len(a) or len(kb) != len(b):
                bad.append(f"  {dt}: duplicate rows (native {len(a)}/{len(ka)}, spark {len(b)}/{len(kb)})")
            for k in sorted(set(ka) - set(kb)):
                bad.append(f"  {dt}: only native: {k}")
            for k in sorted(set(kb) - set(ka)):
                bad.append(f"  {dt}: only spark:  {k}")
            for k in sorted(set(ka) & set(kb)):
                if abs(ka[k] - kb[k]) > 1e-12 * max(1.0, abs(ka[k])):
                    bad.append(f"  {dt}: value differs for {k}: native {ka[k]!r}, spark {kb[k]!r}")
        took = time.time() - started
        if bad:
            failures += 1
            print(f"DIFF {name}: {len(bad)} difference(s) ({total} native rows, {took:.1f}s)")
            for line in bad[:40]:
                print(line)
            if len(bad) > 40:
                print(f"  ... and {len(bad) - 40} more")
        else:
            print(f"ok   {name}: {total} rows equal ({rolling} rolling) over {len(dates.split(','))} day(s) ({took:.1f}s)")
        sys.stdout.flush()
    if spark is not None:
        spark.stop()
    cases = sum(1 for line in open(sys.argv[1])) if len(sys.argv) > 1 else None
    if cases is not None:
        print(f"parity: {cases - failures} passed, {failures} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
