#!/usr/bin/env bash
# benches/compare.sh -- kefu against a hand-written DuckDB query, whole job
# against whole job, on the same machine and the same data.
#
# What is compared: the Pinduoduo shop_daily table of 2024-05-16 (the presets
# in force that day: pdd.manual_reply_rate_3m, pdd.answer_rate_30s,
# pdd.avg_manual_response), computed
#   * by `kefu run --platform pdd --date 2024-05-16`, the job users schedule
#     (default flags: it also writes the items drill-down), the headline;
#   * by the same with `--no-items`, beside it;
#   * by benches/duckdb/pdd_shop_daily.sql, plain DuckDB SQL with window
#     functions, in one Python process that reads the Parquet input and
#     writes the result as Parquet (benches/duckdb/run_duckdb.py);
# and the scan floor: DuckDB reading the same columns of the same rows and
# counting them per shop (benches/duckdb/scan_floor.sql), the least any
# engine must do.
# The numbers must be identical (every shop, metric, numerator, denominator)
# before any time is reported; then the four jobs are timed, alternating
# (DuckDB first in each round, the others' order rotated).
#
# Usage:
#   benches/compare.sh [--rows N] [--shops S] [--runs R]
#   ROWS=1000000 benches/compare.sh          # a quick run
#
# Settings (flags win over the environment):
#   ROWS    rows to generate, about               (default 10000000)
#   SHOPS   shops                                  (default 4000)
#   RUNS    timed runs of each job                 (default 5)
#   KEFU    kefu binary to time (default: built here, release, in
#           $CARGO_TARGET_DIR or ~/.cache/kefu-target, rebuilt when stale)
#   DUCKDB_SPEC  what `pip install` gets           (default: duckdb)
#   SKIP_EDGE=1  skip the hand-made edge-case self-check
#
# Needs: python3 with venv, and /usr/bin/time (installed with apt-get when
# missing and running as root). Generated data and a virtualenv live in
# benches/data/ and benches/.venv/ (both git-ignored); data is reused when
# its parameters and the generator's source are unchanged.
set -euo pipefail

# ---------------------------------------------------------------- settings
ROWS=${ROWS:-10000000}
SHOPS=${SHOPS:-4000}
RUNS=${RUNS:-5}
while [[ $# -gt 0 ]]; do
    case $1 in
        --rows)  ROWS=$2;  shift 2 ;;
        --shops) SHOPS=$2; shift 2 ;;
        --runs)  RUNS=$2;  shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "compare.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done
for v in ROWS SHOPS RUNS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: $v must be a positive integer, not '${!v}'" >&2; exit 2; }
done

DAY=2024-05-16          # the day computed; the data holds it and the next day
DAYS=2
SEED=1
PLATFORM=pdd

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/benches
VENV=$BENCH/.venv
DATA_DIR=$BENCH/data
PY=$VENV/bin/python
TIME=/usr/bin/time

log() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------ kefu binary
TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/kefu-target}
if [[ -z ${KEFU:-} ]]; then
    KEFU=$TARGET_DIR/release/kefu
    # Rebuild when the binary is missing or older than any source. Another
    # build may hold cargo's lock; cargo then waits, which is fine.
    if [[ ! -x $KEFU ]] || [[ -n $(cd "$ROOT" && find src queries Cargo.toml Cargo.lock \
                                        -newer "$KEFU" -print -quit 2>/dev/null) ]]; then
        log "building kefu (release) in $TARGET_DIR"
        (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release)
    fi
fi
[[ -x $KEFU ]] || die "no kefu binary at $KEFU"
# Time a private copy: a build running meanwhile may replace the original.
mkdir -p "$DATA_DIR"
WORK=$(mktemp -d "$DATA_DIR/run.XXXXXX")
# Scratch space, removed at the end; kept after a failure, for a look.
cleanup() {
    local rc=$?
    if [[ $rc -eq 0 ]]; then rm -rf "$WORK"; else echo "compare.sh: outputs kept in $WORK" >&2; fi
}
trap cleanup EXIT
cp "$KEFU" "$WORK/kefu"
KEFU_BIN=$WORK/kefu

# ------------------------------------------------------- python + duckdb
if [[ ! -x $PY ]]; then
    log "creating the virtualenv $VENV"
    python3 -m venv "$VENV"
fi
if ! "$PY" -c 'import duckdb' 2>/dev/null; then
    log "pip install ${DUCKDB_SPEC:-duckdb}"
    "$PY" -m pip install --quiet --disable-pip-version-check "${DUCKDB_SPEC:-duckdb}"
fi
DUCKDB_VERSION=$("$PY" -c 'import duckdb; print(duckdb.__version__)')

# ----------------------------------------------------------- /usr/bin/time
if [[ ! -x $TIME ]]; then
    [[ $(id -u) -eq 0 ]] || die "$TIME is missing: install the Debian package 'time'"
    log "installing /usr/bin/time (Debian package 'time')"
    apt-get update -qq && apt-get install -y -qq time >/dev/null
fi

# ------------------------------------------------------------------- data
# Reused when the same parameters were generated by the same generator
# source (src/gen/); a stamp file beside the data records both.
DATA=$DATA_DIR/msgs-rows$ROWS-shops$SHOPS-days$DAYS-$DAY-seed$SEED.parquet
STAMP="gen --rows $ROWS --days $DAYS --shops $SHOPS --start $DAY --seed $SEED; src/gen $(cat "$ROOT"/src/gen/*.rs | sha256sum | cut -c1-16)"
if [[ -f $DATA && -f $DATA.stamp && $(cat "$DATA.stamp") == "$STAMP" ]]; then
    log "reusing $DATA"
else
    log "generating $DATA"
    rm -f "$DATA" "$DATA.stamp"
    "$KEFU_BIN" gen --output "$DATA.tmp" --rows "$ROWS" --days "$DAYS" --shops "$SHOPS" \
        --start "$DAY" --seed "$SEED"
    mv "$DATA.tmp" "$DATA"
    echo "$STAMP" >"$DATA.stamp"
fi
DATA_ROWS=$("$PY" -c 'import duckdb, sys; print(duckdb.execute("SELECT count(*) FROM read_parquet(?)", [sys.argv[1]]).fetchall()[0][0])' "$DATA")
DATA_MB=$(( $(stat -c %s "$DATA") / 1000000 ))

# -------------------------------------------------------------- the jobs
KEFU_OUT=$WORK/kefu_out
KEFU_SHOP_DAILY=$KEFU_OUT/shop_daily/platform=$PLATFORM/dt=$DAY/part-0.parquet
DUCK_OUT=$WORK/duckdb_shop_daily.parquet

KEFU_CMD=("$KEFU_BIN" run --input "$DATA" --output "$KEFU_OUT" --platform "$PLATFORM"
          --date "$DAY")
KEFU_NOITEMS_CMD=("${KEFU_CMD[@]}" --no-items)
DUCK_CMD=("$PY" "$BENCH/duckdb/run_duckdb.py" --input "$DATA" --day "$DAY" --output "$DUCK_OUT")
FLOOR_OUT=$WORK/scan_floor.parquet
FLOOR_CMD=("$PY" "$BENCH/duckdb/run_duckdb.py" --input "$DATA" --day "$DAY" --output "$FLOOR_OUT"
           --scan-floor)
# All six platforms' presets in one kefu run (the read and the threads are
# shared; the rolling windows of four platforms back-fill their window days).
KEFU_ALL_CMD=("$KEFU_BIN" run --input "$DATA" --output "$KEFU_OUT" --platform all
              --date "$DAY" --no-items)

# timed NAME I: one run of job NAME (kefu, kefunoitems, duckdb, floor or
# kefuall) under /usr/bin/time,
# from an empty output. Wall s, max RSS KB, user s and system s go to
# $WORK/NAME.I.time, the job's own output to $WORK/NAME.I.log.
timed() {
    local name=$1 i=$2
    local -a cmd
    case $name in
        kefu) cmd=("${KEFU_CMD[@]}") ;;
        kefunoitems) cmd=("${KEFU_NOITEMS_CMD[@]}") ;;
        kefuall) cmd=("${KEFU_ALL_CMD[@]}") ;;
        floor) cmd=("${FLOOR_CMD[@]}") ;;
        *) cmd=("${DUCK_CMD[@]}") ;;
    esac
    case $name in
        kefu*) rm -rf "$KEFU_OUT" ;;
        floor) rm -f "$FLOOR_OUT" ;;
        *) rm -f "$DUCK_OUT" ;;
    esac
    if ! "$TIME" -f '%e %M %U %S' -o "$WORK/$name.$i.time" "${cmd[@]}" \
            >"$WORK/$name.$i.log" 2>&1; then
        cat "$WORK/$name.$i.log" >&2
        die "$name failed (run $i): ${cmd[*]}"
    fi
}

# Busy CPU time of the whole machine, in clock ticks (for "was it busy").
busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }

# ---------------------------------------------------------------- report
NPROC=$(nproc)
CPU_MODEL=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
MEM_TOTAL=$(free -h | awk '/^Mem:/{print $2}')
RUSTC=$(rustc --version 2>/dev/null || echo "rustc: not on PATH")
KEFU_VERSION=$("$KEFU_BIN" --version 2>/dev/null || echo kefu)
if GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null); then
    [[ -z $(git -C "$ROOT" status --porcelain --untracked-files=no -- src queries Cargo.toml Cargo.lock 2>/dev/null) ]] ||
        GIT_REV="$GIT_REV + uncommitted changes"
    KEFU_VERSION="$KEFU_VERSION (commit $GIT_REV)"
fi
cat >&2 <<EOF

kefu vs DuckDB, whole job: $PLATFORM shop_daily for $DAY
  data     $DATA
           $DATA_ROWS rows, $SHOPS shops, $DAYS days, ${DATA_MB} MB
  machine  $NPROC cores ($CPU_MODEL), $MEM_TOTAL memory
  versions $KEFU_VERSION ($KEFU), $RUSTC, duckdb $DUCKDB_VERSION
  runs     $RUNS of each, alternating; both use all cores (their defaults)
EOF

# ------------------------------------------- 1. self-check on edge cases
if [[ ${SKIP_EDGE:-0} != 1 ]]; then
    log "self-check: kefu and the SQL on hand-made edge cases"
    (cd "$BENCH/duckdb" && "$PY" edge_cases.py "$KEFU_BIN" "$WORK/edge") >&2
fi

# ---------------------------------- 2. equality first (also warms caches)
log "equality check: one run of each, then every shop, metric, numerator, denominator"
timed kefunoitems check
cp "$KEFU_SHOP_DAILY" "$WORK/kefu_noitems_shop_daily.parquet"
timed kefu check
cp "$KEFU_SHOP_DAILY" "$WORK/kefu_shop_daily.parquet"
timed floor check
timed duckdb check
"$PY" "$BENCH/duckdb/check_equal.py" "$WORK/kefu_shop_daily.parquet" "$DUCK_OUT" >&2 ||
    die "kefu and DuckDB disagree (rows above); no times are reported"
"$PY" "$BENCH/duckdb/check_equal.py" "$WORK/kefu_noitems_shop_daily.parquet" "$DUCK_OUT" >&2 ||
    die "kefu --no-items and DuckDB disagree (rows above); no times are reported"

# ------------------------------------------------------- 3. timed runs
# Each round runs DuckDB first, then the other three jobs in an order
# rotated by one per round. A job run right after DuckDB (or after the short
# floor that follows it) pays more for its first touches of memory on these
# VMs (kefu's read: 1.8-2.2 s there against 1.0-1.1 s after another kefu
# run, measured 2026-12-03); a fixed order put the default job in that
# place every round, and a merely rotated one keeps each job's successor.
# Here each kefu job follows DuckDB, directly or through one job, equally
# often over three rounds.
JOBS=(kefu kefunoitems floor)
log "timing: $RUNS runs of each, alternating: duckdb, then kefu / kefu --no-items / scan floor, their order rotated each round"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
BUSY_BEFORE=$(busy_ticks)
SECONDS_BEFORE=$(date +%s.%N)
for i in $(seq 1 "$RUNS"); do
    order=()
    for k in 0 1 2 3; do
        if (( k == 0 )); then name=duckdb; else name=${JOBS[$(( (i - 2 + k) % 3 ))]}; fi
        order+=("$name")
        timed "$name" "$i"
        case $name in
            kefu) cp "$KEFU_SHOP_DAILY" "$WORK/kefu_shop_daily.parquet" ;;
            kefunoitems) cp "$KEFU_SHOP_DAILY" "$WORK/kefu_noitems_shop_daily.parquet" ;;
        esac
    done
    t() { cut -d' ' -f1 "$WORK/$1.$i.time"; }
    printf '  run %d: kefu %6.2f s   kefu --no-items %6.2f s   duckdb %6.2f s   scan floor %6.2f s   (order: %s)\n' \
        "$i" "$(t kefu)" "$(t kefunoitems)" "$(t duckdb)" "$(t floor)" "${order[*]}" >&2
done
SECONDS_AFTER=$(date +%s.%N)
BUSY_AFTER=$(busy_ticks)
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# The timed runs must still agree (same binary, same data: they should).
"$PY" "$BENCH/duckdb/check_equal.py" "$WORK/kefu_shop_daily.parquet" "$DUCK_OUT" >&2 ||
    die "kefu and DuckDB disagree on the last timed run"
"$PY" "$BENCH/duckdb/check_equal.py" "$WORK/kefu_noitems_shop_daily.parquet" "$DUCK_OUT" >&2 ||
    die "kefu --no-items and DuckDB disagree on the last timed run"

# All six platforms in one kefu run, after the pairs (not counted in the
# other-processes share above).
log "timing: $RUNS runs of kefu with all six platforms"
for i in $(seq 1 "$RUNS"); do
    timed kefuall "$i"
    printf '  run %d: kefu --platform all %6.2f s\n' "$i" "$(cut -d' ' -f1 "$WORK/kefuall.$i.time")" >&2
done

# --------------------------------------------------------- 4. summary
# column C (1 = wall s, 2 = max RSS KB, 3 = user s, 4 = sys s) of job NAME's runs
col() { for i in $(seq 1 "$RUNS"); do cut -d' ' -f"$2" "$WORK/$1.$i.time"; done; }
median() { sort -g | awk '{a[NR]=$1} END {printf "%.2f\n", (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
maxof() { sort -g | tail -n1; }
minof() { sort -g | head -n1; }

cpu() { paste -d' ' <(col "$1" 3) <(col "$1" 4) | awk '{print $1 + $2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
# row NAME LABEL: a table row of job NAME's median, min-max, CPU, peak RSS,
# and its median as a multiple of DuckDB's and of the scan floor's.
D_MED=$(col duckdb 1 | median); F_MED=$(col floor 1 | median)
row() {
    local med min max cpu_med rss
    med=$(col "$1" 1 | median); min=$(col "$1" 1 | minof); max=$(col "$1" 1 | maxof)
    cpu_med=$(cpu "$1" | median); rss=$(( $(col "$1" 2 | maxof) / 1024 ))
    printf '| %s | %s s | %s - %s s | %s s | %s MiB | %sx | %sx |\n' "$2" "$med" "$min" "$max" \
        "$cpu_med" "$rss" "$(ratio "$med" "$D_MED")" "$(ratio "$med" "$F_MED")"
}
K_MED=$(col kefu 1 | median); N_MED=$(col kefunoitems 1 | median)
K_RSS=$(( $(col kefu 2 | maxof) / 1024 ));  D_RSS=$(( $(col duckdb 2 | maxof) / 1024 ))
RATIO=$(ratio "$K_MED" "$D_MED"); N_RATIO=$(ratio "$N_MED" "$D_MED")
A_MED=$(col kefuall 1 | median); A_MIN=$(col kefuall 1 | minof); A_MAX=$(col kefuall 1 | maxof)
A_RSS=$(( $(col kefuall 2 | maxof) / 1024 ))
A_RATIO=$(awk -v k="$N_MED" -v a="$A_MED" 'BEGIN {printf "%.2f", a / k}')
# kefu's phases, from its own log lines ("read Xs ..., N shop bucket(s) built
# and computed Ys"): medians over the timed runs of job NAME.
phase() { for i in $(seq 1 "$RUNS"); do grep -o "$2 [0-9.]*s" "$WORK/$1.$i.log" | head -1 | grep -o '[0-9.]*'; done | median; }
phases() {
    local r b w
    r=$(phase "$1" read); b=$(phase "$1" computed); w=$(col "$1" 1 | median)
    printf 'read %s s, buckets (build, compute, write items) %s s, the rest (start, tables, commit) %s s' \
        "$r" "$b" "$(awk -v w="$w" -v r="$r" -v b="$b" 'BEGIN {printf "%.2f", w - r - b}')"
}
# Share of the machine's CPU used by other processes during the timed runs:
# all busy ticks minus our jobs' user+system time, over wall time x cores.
OURS=$( { cpu kefu; cpu kefunoitems; cpu duckdb; cpu floor; } | awk '{s += $1} END {print s}')
OTHER_PCT=$(awk -v b0="$BUSY_BEFORE" -v b1="$BUSY_AFTER" -v hz="$(getconf CLK_TCK)" \
    -v ours="$OURS" -v t0="$SECONDS_BEFORE" -v t1="$SECONDS_AFTER" -v n="$NPROC" \
    'BEGIN {o = (b1 - b0) / hz - ours; if (o < 0) o = 0; printf "%.0f", 100 * o / ((t1 - t0) * n)}')

cat <<EOF

### kefu vs DuckDB: $PLATFORM shop_daily for $DAY, $DATA_ROWS rows, $SHOPS shops

| job | median wall | min - max | median CPU (user+sys) | peak RSS | × DuckDB | × scan floor |
|---|---:|---:|---:|---:|---:|---:|
$(row kefu "\`kefu run --platform $PLATFORM\` (default: with items)")
$(row kefunoitems "\`kefu run --platform $PLATFORM --no-items\`")
$(row duckdb "DuckDB $DUCKDB_VERSION, hand-written SQL (Python, Parquet in and out)")
$(row floor "scan floor: DuckDB $DUCKDB_VERSION reads the same columns and rows, counts per shop")

- The default job: **${RATIO}x** DuckDB's median wall time (target at most 0.50x), peak ${K_RSS} MiB against DuckDB's ${D_RSS} MiB; \`--no-items\`: **${N_RATIO}x** (target at most 0.35x).
- Numbers: identical (every shop, metric, numerator and denominator), checked before timing and again after.
- $RUNS runs each, alternating (DuckDB first in each round, the others rotated); $NPROC cores ($CPU_MODEL), $MEM_TOTAL; $KEFU_VERSION, $RUSTC.
- Machine load: other processes used about ${OTHER_PCT}% of the CPU during the timed runs (load average ${LOAD_BEFORE} before, ${LOAD_AFTER} after).
- kefu's phases (its own log, medians): default: $(phases kefu); \`--no-items\`: $(phases kefunoitems). The scan floor's ${F_MED} s is the least the read could take.
- All six platforms' presets in one run (\`kefu run --platform all --no-items\`, timed after the pairs): median ${A_MED} s (${A_MIN} - ${A_MAX} s), peak ${A_RSS} MiB: **${A_RATIO}x** the single-platform \`--no-items\` median.
EOF
