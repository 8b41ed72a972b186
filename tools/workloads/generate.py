#!/usr/bin/env python3
"""Writes the sample QoS workloads (deterministic: fixed seeds). Run from the repo root:
    python3 tools/workloads/generate.py
Each line: {"t": arrival seconds, "user": id, "prompt": tokens, "output": tokens}.
User ids match config/qos_config.json; ids not listed there are unknown users."""
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent


def poisson(rng, rate, duration, user, prompt, output):
    t, rows = 0.0, []
    while True:
        t += rng.expovariate(rate)
        if t >= duration:
            return rows
        rows.append({"t": round(t, 4), "user": user,
                     "prompt": rng.randint(*prompt), "output": rng.randint(*output)})


def write(name, rows):
    rows.sort(key=lambda r: r["t"])
    with open(HERE / name, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    print(f"{name}: {len(rows)} requests")


def bronze_flood():
    # Three Bronze users flood the engine; one Platinum user sends a trickle and must not wait.
    rng = random.Random(1)
    rows = []
    for user in ("user_id4", "user_id5", "user_id6"):
        rows += poisson(rng, 4.0, 60, user, (256, 1024), (64, 256))
    rows += poisson(rng, 0.5, 60, "user_id0", (128, 256), (32, 64))
    write("bronze_flood.jsonl", rows)


def gold_lengths():
    # Two Gold users with equal quota: one sends short requests, the other long ones.
    rng = random.Random(2)
    rows = poisson(rng, 20.0, 60, "user_id1", (64, 128), (16, 32))
    rows += poisson(rng, 3.0, 60, "user_id2", (1500, 2500), (200, 400))
    write("gold_lengths.jsonl", rows)


def silver_unknowns():
    # Silver: one listed user (5%) and twenty unknown customers sharing the default 95%; one of
    # the unknown customers floods.
    rng = random.Random(3)
    rows = poisson(rng, 1.0, 60, "user_id3", (200, 400), (64, 128))
    rows += poisson(rng, 10.0, 60, "cust_00", (600, 1000), (150, 250))
    for i in range(1, 20):
        rows += poisson(rng, 0.3, 60, f"cust_{i:02d}", (200, 400), (64, 128))
    write("silver_unknowns.jsonl", rows)


if __name__ == "__main__":
    bronze_flood()
    gold_lengths()
    silver_unknowns()
