#!/usr/bin/env bash
# Parity lane for the Spark path: `kefu sql` on local Spark (pyspark, local[2])
# against `kefu run` (native), shop_daily and shop_rolling compared row by row, for all six
# platforms on synthetic data (the Taobao 2026-03-16 and Pinduoduo 2023-04-27
# version switches) and on the real TWCS sample (America/New_York,
# --rules-as-of 2026-06-01). Exit 1 on any difference.
#
#   tests/spark/parity.sh            # from the repository root
#
# Needs Java 17+ and network access to PyPI the first time (the virtualenv,
# with pyspark and pyarrow, lives in $KEFU_SPARK_VENV, default
# $HOME/.cache/kefu-spark-venv). Builds kefu with
# CARGO_TARGET_DIR (default $HOME/.cache/kefu-target).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/kefu-target}
VENV=${KEFU_SPARK_VENV:-$HOME/.cache/kefu-spark-venv}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kefu-spark-parity.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

java -version >/dev/null 2>&1 || { echo "parity: java not found (Spark needs Java 17+)" >&2; exit 2; }
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import pyspark, pyarrow' 2>/dev/null; then
    echo "parity: creating $VENV (pip install pyspark pyarrow)" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q pyspark pyarrow
fi

(cd "$ROOT" && cargo build --release -q)
KEFU=$CARGO_TARGET_DIR/release/kefu

dates() { # first last -> comma-separated days
    local d=$1 out=""
    while :; do
        out="$out${out:+,}$d"
        [ "$d" = "$2" ] && break
        d=$(date -u -d "$d + 1 day" +%F)
    done
    echo "$out"
}

CASES=$WORK/cases.tsv
: > "$CASES"
add_case() { # name input platform from to [extra kefu args...]
    local name=$1 input=$2 platform=$3 from=$4 to=$5
    shift 5
    local native=$WORK/native-$name spark=$WORK/spark-$name
    "$KEFU" run --input "$input" --output "$native" --platform "$platform" \
        --date "$from" --to "$to" --no-items "$@" 2>"$WORK/$name.log" \
        || { echo "parity: kefu run failed for $name:" >&2; tail -3 "$WORK/$name.log" >&2; exit 1; }
    "$KEFU" sql --skip-scorecard --input "$input" --output "$spark" --platform "$platform" \
        --date "$from" --to "$to" "$@" > "$WORK/$name.sql"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$WORK/$name.sql" "$native" "$spark" \
        "$platform" "$(dates "$from" "$to")" >> "$CASES"
}

PLATFORMS="pdd taobao douyin jd kuaishou xiaohongshu"

"$KEFU" gen --output "$WORK/gen2026.parquet" --rows 20000 --days 4 --shops 20 --start 2026-03-14 --seed 3 2>/dev/null
"$KEFU" gen --output "$WORK/gen2023.parquet" --rows 20000 --days 4 --shops 20 --start 2023-04-25 --seed 3 2>/dev/null
for p in $PLATFORMS; do
    add_case "$p-2026" "$WORK/gen2026.parquet" "$p" 2026-03-14 2026-03-17
    add_case "$p-2023" "$WORK/gen2023.parquet" "$p" 2023-04-25 2023-04-28
done

# Dense random tables (fuzz_input.py): ties, thresholds, midnight, bad rows,
# duplicates, peers, session ids; the naive one with fuzz_rules.toml (every
# rule field, remapped columns and senders, America/New_York over the DST switch).
mkdir -p "$WORK/fz2023" "$WORK/fz2026"
"$VENV/bin/python" "$ROOT/tests/spark/fuzz_input.py" "$WORK/fz2023" 2023-04-25 4 11 >/dev/null
"$VENV/bin/python" "$ROOT/tests/spark/fuzz_input.py" "$WORK/fz2026" 2026-03-06 4 7 >/dev/null
printf 'max_bad_row_share = 1.0\n' > "$WORK/lenient.toml"
for p in $PLATFORMS; do
    add_case "$p-fuzz" "$WORK/fz2023/zoned.parquet" "$p" 2023-04-25 2023-04-28 --rules "$WORK/lenient.toml"
done
add_case "dir-fuzz" "$WORK/fz2023/dir" pdd 2023-04-25 2023-04-28 --rules "$WORK/lenient.toml"
add_case "rules-fuzz" "$WORK/fz2026/naive.parquet" fuzz 2026-03-06 2026-03-09 --rules "$ROOT/tests/spark/fuzz_rules.toml"
mkdir -p "$WORK/fz2026b"
"$VENV/bin/python" "$ROOT/tests/spark/fuzz_input.py" "$WORK/fz2026b" 2026-10-30 4 5 >/dev/null
add_case "rules-fuzz-fall" "$WORK/fz2026b/naive.parquet" fuzz 2026-10-30 2026-11-02 --rules "$ROOT/tests/spark/fuzz_rules.toml"

TWCS=${KEFU_TWCS:-/work/shared/realdata/twcs_sample.parquet}
if [ -f "$TWCS" ]; then
    printf 'timezone = "America/New_York"\n' > "$WORK/ny.toml"
    for p in $PLATFORMS; do
        add_case "$p-twcs" "$TWCS" "$p" 2017-11-20 2017-12-03 --rules "$WORK/ny.toml" --rules-as-of 2026-06-01
    done
else
    echo "parity: $TWCS not found: skipping the real-data cases" >&2
fi

"$VENV/bin/python" "$ROOT/tests/spark/parity.py" "$CASES" 2> >(grep -v -E '^(WARN|Using Spark|To adjust|Setting default|[0-9/: ]+ WARN)|Stage [0-9]+' >&2)
