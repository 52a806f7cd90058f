"""Writes small, dense random message tables for the Spark parity lane: ties,
sub-millisecond times, replies at thresholds and across midnight, duplicate
msg_ids, bad rows, non-consumer peers, session ids (some null), auto, assist,
spam and blocked rows, integer shop ids, remapped columns and sender values.

    fuzz_input.py OUT_DIR FIRST_DAY DAYS SEED

Writes OUT_DIR/zoned.parquet (timestamp[us, UTC], canonical names, integer
shop_id) and OUT_DIR/naive.parquet (timestamp[us] without a zone, columns
`mall`, `customer`, `sent_at`, `role` with values 0/1/2/3, no session_id).
"""
import datetime as dt
import random
import sys

import pyarrow as pa
import pyarrow.parquet as pq

out, first, days, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
start = dt.datetime.fromisoformat(first)  # local midnight of the first day (naive)
OFFSET = dt.timedelta(hours=8)  # zoned file: Asia/Shanghai, no DST

rows = []
for shop in range(40):
    for buyer in range(rng.randint(3, 14)):
        t = start + dt.timedelta(days=rng.randint(0, days), seconds=rng.randint(0, 86399))
        if rng.random() < 0.2:  # near midnight or the hours limits
            day = start + dt.timedelta(days=rng.randint(0, days))
            edge = rng.choice([0, 8 * 3600, 9 * 3600, 23 * 3600, 24 * 3600])
            t = day + dt.timedelta(seconds=edge + rng.randint(-400, 400))
        session = None
        for k in range(rng.randint(1, 16)):
            gap = rng.choice([0, 0, 0.0004, 1, 5, 30, 30, 59, 60, 61, 179, 180, 181, 300, 600, 601, 1800, 3600, 20000, 90000])
            t = t + dt.timedelta(seconds=gap)
            if rng.random() < 0.3:
                session = rng.choice([None, "s1", "s2", "s3", ""])
            sender = rng.choices(["buyer", "agent", "bot", "system", "alien", None], [50, 30, 10, 4, 1, 1])[0]
            msg = rng.choice([None, f"m{rng.randint(0, 40)}", f"m{rng.randint(0, 400000)}"])
            rows.append(dict(
                shop=None if rng.random() < 0.005 else shop,
                buyer=None if rng.random() < 0.005 else f"b{buyer}",
                t=None if rng.random() < 0.005 else t,
                sender=sender,
                msg_id=msg,
                agent_id=rng.choice([None, "", f"a{rng.randint(0, 3)}"]),
                auto=rng.random() < 0.15,
                assist=rng.random() < 0.5,
                spam=rng.random() < 0.03,
                blocked=None if rng.random() < 0.1 else rng.random() < 0.03,
                peer_kind=rng.choices([None, "consumer", "sub_account", "platform_staff"], [30, 60, 5, 5])[0],
                session_id=session,
            ))
rng.shuffle(rows)

def ts_list(zoned):
    v = []
    for r in rows:
        if r["t"] is None:
            v.append(None)
        else:
            v.append((r["t"] - OFFSET).replace(tzinfo=dt.timezone.utc) if zoned else r["t"])
    return v

zoned = pa.table({
    "shop_id": pa.array([r["shop"] for r in rows], pa.int64()),
    "buyer_id": [r["buyer"] for r in rows],
    "ts": pa.array(ts_list(True), pa.timestamp("us", tz="UTC")),
    "sender": [r["sender"] for r in rows],
    "msg_id": [r["msg_id"] for r in rows],
    "agent_id": [r["agent_id"] for r in rows],
    "auto": [r["auto"] for r in rows],
    "assist": [r["assist"] for r in rows],
    "spam": [r["spam"] for r in rows],
    "blocked": [r["blocked"] for r in rows],
    "peer_kind": [r["peer_kind"] for r in rows],
    "session_id": [r["session_id"] for r in rows],
})
pq.write_table(zoned, f"{out}/zoned.parquet", row_group_size=700)
code = {"buyer": "0", "agent": "1", "bot": "2", "system": "3"}
naive = pa.table({
    "mall": [None if r["shop"] is None else f"shop{r['shop']}" for r in rows],
    "customer": [r["buyer"] for r in rows],
    "sent_at": pa.array(ts_list(False), pa.timestamp("us")),
    "role": [code.get(r["sender"], r["sender"]) for r in rows],
    "msg_id": [r["msg_id"] for r in rows],
    "agent_id": [r["agent_id"] for r in rows],
    "auto": [r["auto"] for r in rows],
    "assist": [r["assist"] for r in rows],
    "spam": [r["spam"] for r in rows],
    "peer_kind": [r["peer_kind"] for r in rows],
})
pq.write_table(naive, f"{out}/naive.parquet", row_group_size=700)
print(len(rows))

# The zoned rows again as a Hive-style directory of three files (input order:
# files in path order, then rows), so that duplicates span files.
import os

n = zoned.num_rows
# (Not `dt=` folders: kefu may skip those by their date, and these hold rows
# of every day.)
for k in range(3):
    os.makedirs(f"{out}/dir/batch={k}", exist_ok=True)
    pq.write_table(zoned.slice(k * n // 3, (k + 1) * n // 3 - k * n // 3), f"{out}/dir/batch={k}/part-{k}.parquet")
