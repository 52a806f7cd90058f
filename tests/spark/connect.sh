#!/usr/bin/env bash
# Spark Connect lane: `kefu run --engine spark --spark-remote sc://...` (kefu
# built with --features spark-connect) against `kefu run` (native) on a local
# Spark Connect server started from the pyspark of the parity lane's
# virtualenv; shop_daily and shop_rolling compared row by row (parity.py).
# Exit 1 on any difference.
#
#   tests/spark/connect.sh        # from the repository root, after parity.sh
#
# Needs Java 17+ and the virtualenv of parity.sh ($KEFU_SPARK_VENV, default
# $HOME/.cache/kefu-spark-venv; created here too if missing). The feature
# build compiles the Spark Connect client (tonic, arrow-rs) once into
# CARGO_TARGET_DIR (default $HOME/.cache/kefu-target).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/kefu-target}
VENV=${KEFU_SPARK_VENV:-$HOME/.cache/kefu-spark-venv}
PORT=${KEFU_CONNECT_PORT:-15092}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kefu-spark-connect.XXXXXX")

java -version >/dev/null 2>&1 || { echo "connect: java not found (Spark needs Java 17+)" >&2; exit 2; }
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import pyspark, pyarrow' 2>/dev/null; then
    echo "connect: creating $VENV (pip install pyspark pyarrow)" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q pyspark pyarrow
fi
SPARK_HOME=$("$VENV/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')
export SPARK_HOME SPARK_LOG_DIR=$WORK/logs SPARK_PID_DIR=$WORK/pids SPARK_IDENT_STRING=kefu-$PORT

stop() {
    "$SPARK_HOME/sbin/stop-connect-server.sh" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap stop EXIT

# The Spark Connect protocol crate compiles its .proto files with protoc.
if ! command -v protoc >/dev/null 2>&1; then
    echo "connect: installing protoc (Debian package protobuf-compiler)" >&2
    apt-get install -y -qq protobuf-compiler >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get install -y -qq protobuf-compiler >/dev/null; }
fi
(cd "$ROOT" && cargo build --release -q --features spark-connect)
KEFU=$CARGO_TARGET_DIR/release/kefu

echo "connect: starting a Spark Connect server on port $PORT" >&2
"$SPARK_HOME/sbin/start-connect-server.sh" --master 'local[2]' \
    --conf spark.connect.grpc.binding.port="$PORT" \
    --conf spark.ui.enabled=false \
    --conf spark.sql.shuffle.partitions=4 >/dev/null
for _ in $(seq 120); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 1
done
(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null \
    || { echo "connect: the server did not start:" >&2; tail -20 "$WORK"/logs/*.out >&2; exit 1; }

"$KEFU" gen --output "$WORK/g.parquet" --rows 20000 --days 4 --shops 20 --start 2026-03-14 --seed 5 2>/dev/null
CASES=$WORK/cases.tsv
: > "$CASES"
for p in pdd taobao xiaohongshu; do
    "$KEFU" run --input "$WORK/g.parquet" --output "$WORK/native" --platform "$p" \
        --date 2026-03-14 --to 2026-03-17 --no-items 2>"$WORK/native-$p.log" \
        || { tail -3 "$WORK/native-$p.log" >&2; exit 1; }
done
# Without --skip-scorecard, a list whose later platform has scorecard
# metrics is refused before anything is submitted (jd has none: were the
# jobs submitted one by one as they compile, jd's partitions would exist).
if "$KEFU" run --engine spark --spark-remote "sc://127.0.0.1:$PORT" --input "$WORK/g.parquet" \
    --output "$WORK/refused" --platform jd,pdd --date 2026-03-14 2>"$WORK/refused.log"; then
    echo "connect: --engine spark left the scorecard out without --skip-scorecard" >&2; exit 1
fi
grep -q "not compiled to Spark SQL" "$WORK/refused.log" \
    || { echo "connect: unexpected refusal:" >&2; cat "$WORK/refused.log" >&2; exit 1; }
[ ! -e "$WORK/refused/shop_daily" ] \
    || { echo "connect: jd was submitted before pdd was refused" >&2; exit 1; }
# One submission for the three platforms (--platform takes a list).
"$KEFU" run --engine spark --skip-scorecard --spark-remote "sc://127.0.0.1:$PORT" --input "$WORK/g.parquet" \
    --output "$WORK/spark" --platform pdd,taobao,xiaohongshu --date 2026-03-14 --to 2026-03-17 \
    2>"$WORK/spark.log" || { echo "connect: kefu --engine spark failed:" >&2; tail -20 "$WORK/spark.log" >&2; exit 1; }
for p in pdd taobao xiaohongshu; do
    printf '%s\t-\t%s\t%s\t%s\t%s\n' "connect-$p" "$WORK/native" "$WORK/spark" "$p" \
        "2026-03-14,2026-03-15,2026-03-16,2026-03-17" >> "$CASES"
done
"$VENV/bin/python" "$ROOT/tests/spark/parity.py" "$CASES"
