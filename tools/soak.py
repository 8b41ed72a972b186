#!/usr/bin/env python3
"""A bounded soak of the real server (default model, CPU engine) on loopback: a mixed workload at
twice the engine's batch, for a fixed time, then figures. Run through tools/soak.sh.

Twice capacity: `--concurrency` closed-loop clients (default 2 x --max-num-seqs), so as many
requests wait in the QoS queue as run. Each client draws from the mix: chat (whole, streamed with
usage), completions with n = 2 and a stop string, interactive session turns, a stream abandoned after
its first event, a bad request, an unknown path; users spread over the four groups. Bronze has a
queue bound (group_limits) so the designed 429/503 paths are exercised too.

Checks, printed with the figures (exit 1 when one fails):
  - no 5xx other than the designed 503 (queue_timeout);
  - RSS after warm-up (the first fifth of the run) stays within 5% of its value at warm-up's end;
  - no file-descriptor growth: quiet before and after, the server holds the same number;
  - afterwards nothing in use: KV blocks, queue, running, connections."""
import argparse
import json
import os
import platform
import random
import ssl
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import tg_http

ROOT = Path(__file__).resolve().parents[1]


def cpu_model():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def isa():
    flags = next((l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags")), "")
    return " ".join(f for f in ("avx512f", "avx2", "fma", "neon") if f" {f}" in flags) or "baseline"


class Client:
    """One keep-alive connection, reopened whenever the server has closed it."""

    def __init__(self, server, key):
        self.server, self.key, self.conn = server, key, None

    def close(self):
        if self.conn:
            self.conn.close()
        self.conn = None

    def request(self, method, path, body=None, leave_after_first_event=False):
        """(status, body bytes); with leave_after_first_event the connection is dropped mid-stream."""
        data = json.dumps(body) if body is not None else ""
        for attempt in range(2):
            if self.conn is None:
                self.conn = self.server.connect(timeout=300)
            try:
                self.conn.send_request(method, path, body=data, key=self.key)
                if leave_after_first_event:
                    _, status, headers = self.conn.read_head()
                    answer = b""
                    if status == 200:
                        self.conn.read_until(b"\r\n")  # the first chunk's size line: the stream has begun
                    elif "content-length" in headers:  # refused before it streamed: read why (a designed 503?)
                        answer = self.conn.read_exact(int(headers["content-length"]))
                    self.close()
                    return status, answer
                status, headers, answer = self.conn.read_response()
            except (EOFError, OSError, ssl.SSLError):
                self.close()  # a kept-alive connection the server had closed: once more on a new one
                if attempt:
                    raise
                continue
            if headers.get("connection", "").lower() == "close":
                self.close()
            return status, answer
        raise AssertionError("unreachable")


USERS = ["user_id0", "user_id1", "user_id2", "user_id3", "user_id4", "user_id5", "user_id6"] + \
        [f"soak-unknown-{i}" for i in range(20)]


UNDESIGNED = []  # what each 5xx other than the designed 503 was (list.append is atomic)


def one_request(client, rng, worker, counts, designed):
    user = rng.choice(USERS)
    kind = rng.choices(["chat", "stream", "n2", "interactive", "leave", "bad", "404"],
                       weights=[25, 25, 10, 15, 15, 5, 5])[0]
    msgs = [{"role": "user", "content": rng.choice(["Tell me about rivers.", "What is 2+2?", "Write a haiku.",
                                                    "Name three colours.", "Explain TCP briefly."])}]
    if kind == "chat":
        status, body = client.request("POST", "/v1/chat/completions",
                                      {"messages": msgs, "max_tokens": rng.randint(8, 48), "user": user})
    elif kind == "stream":
        status, body = client.request("POST", "/v1/chat/completions",
                                      {"messages": msgs, "max_tokens": rng.randint(8, 48), "stream": True,
                                       "stream_options": {"include_usage": True}, "user": user})
    elif kind == "n2":
        status, body = client.request("POST", "/v1/completions",
                                      {"prompt": "1, 2, 3,", "max_tokens": 16, "n": 2, "stop": [" 9"], "user": user})
    elif kind == "interactive":
        status, body = client.request("POST", "/v1/chat/interactive_qos",
                                      {"prompt": rng.choice(["Hi.", "Go on.", "Why?"]), "session_id": worker,
                                       "interactive_mode": rng.random() > 0.2, "request_output_len": 24,
                                       "user_id": user})
    elif kind == "leave":
        status, body = client.request("POST", "/v1/chat/completions",
                                      {"messages": msgs, "max_tokens": 200, "stream": True, "user": user},
                                      leave_after_first_event=True)
    elif kind == "bad":
        status, body = client.request("POST", "/v1/chat/completions", {"messages": [], "temperature": "x"})
    else:
        status, body = client.request("GET", f"/no/such/path/{rng.randint(0, 10 ** 9)}")
    counts[status] += 1
    if status == 503 and b"queue_timeout" in body:
        designed[503] += 1
    elif status >= 500:
        UNDESIGNED.append(f"{kind} for {user}: {status} {body[:300]!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=str(ROOT / "build/release/gateway/tiergate"))
    ap.add_argument("--model", default=str(ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--max-num-seqs", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=0, help="clients (default 2 x --max-num-seqs)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    concurrency = args.concurrency or 2 * args.max_num_seqs
    state = Path(tempfile.mkdtemp(prefix="tg-soak."))
    qos = json.loads((ROOT / "config/qos_config.json").read_text())
    qos["group_limits"] = {"Bronze": {"max_queued": 4, "max_queue_wait_s": 4, "retry_after_s": 1}}
    tg_http.BINARY, tg_http.MODEL = Path(args.binary), Path(args.model)
    server = tg_http.Server(state, "--max-num-seqs", str(args.max_num_seqs), "--kv-cache-blocks", "1024",
                            "--threads", str(args.threads), "--max-connections-per-client", "0",
                            qos_text=json.dumps(qos))
    key = server.keys["admin"]
    print(f"soak: {cpu_model()} ({isa()}), {os.cpu_count()} cores; {args.minutes:g} min, {concurrency} clients, "
          f"--max-num-seqs {args.max_num_seqs}, engine threads {args.threads}; log {server.log_path}")
    quiet_rss, quiet_fds = server.rss_kib(), server.pid_fds()

    counts, designed, errors = Counter(), Counter(), Counter()
    stop = threading.Event()
    lock = threading.Lock()

    def worker(i):
        rng = random.Random(i)
        client = Client(server, key)
        local, local_designed = Counter(), Counter()
        while not stop.is_set():
            try:
                one_request(client, rng, i, local, local_designed)
            except (OSError, EOFError, ssl.SSLError, ValueError) as e:
                errors[type(e).__name__] += 1
                client.close()
        client.close()
        with lock:
            counts.update(local)
            designed.update(local_designed)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    start = time.monotonic()
    for t in threads:
        t.start()
    duration = args.minutes * 60
    warmup = duration / 5
    samples = []  # (seconds, rss KiB, fds)
    while time.monotonic() - start < duration:
        time.sleep(min(10, max(0.1, duration - (time.monotonic() - start))))
        samples.append((time.monotonic() - start, server.rss_kib(), server.pid_fds()))
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    time.sleep(2)
    text = server.metrics()
    tg_http.wait_for(lambda: server.pid_fds() <= quiet_fds, 10)  # the scrape's own connection closing
    end_rss, end_fds = server.rss_kib(), server.pid_fds()
    settled = {
        "kv_active": tg_http.metric_value(text, "tiergate_kv_blocks", state="active"),
        "waiting": sum(tg_http.metric_samples(text, "tiergate_queue_waiting")),
        "running": sum(tg_http.metric_samples(text, "tiergate_running")),
        "connections": tg_http.metric_value(text, "tiergate_http_connections") - 1,
        "sessions": tg_http.metric_value(text, "tiergate_http_sessions") - 1,
    }
    generated = tg_http.metric_value(text, "tiergate_tokens_generated_total")
    server.proc.send_signal(15)  # SIGTERM: a graceful stop, which must exit 0
    exit_code = server.proc.wait(timeout=120)

    after = [s for s in samples if s[0] >= warmup]
    base_rss = after[0][1] if after else quiet_rss
    max_rss = max((s[1] for s in after), default=base_rss)
    min_rss = min((s[1] for s in after), default=base_rss)
    total = sum(counts.values())
    five_xx = sum(n for s, n in counts.items() if s >= 500) - designed[503]
    print(f"requests {total} in {elapsed:.0f} s ({total / elapsed:.1f}/s), tokens generated {generated:.0f} "
          f"({generated / elapsed:.0f}/s); client-side errors {dict(errors) or 0}")
    print("statuses " + ", ".join(f"{s}: {n}" for s, n in sorted(counts.items())) +
          f"; designed 503 (queue_timeout) {designed[503]}; other 5xx {five_xx}")
    for line in UNDESIGNED[:5]:
        print(f"  undesigned: {line}")
    print(f"RSS KiB: quiet start {quiet_rss}, after warm-up {base_rss}, min {min_rss}, max {max_rss} "
          f"({100 * (max_rss - base_rss) / base_rss:+.1f}%), end {end_rss}")
    print(f"fds: quiet start {quiet_fds}, max under load {max(s[2] for s in samples)}, quiet end {end_fds}")
    print("afterwards: " + ", ".join(f"{k} {v:g}" for k, v in settled.items()) + f"; exit status {exit_code}")
    failures = []
    if five_xx:
        failures.append(f"{five_xx} undesigned 5xx")
    if max_rss > base_rss * 1.05:
        failures.append("RSS grew more than 5% after warm-up")
    if end_fds > quiet_fds:
        failures.append(f"fds {quiet_fds} -> {end_fds}")
    if any(settled.values()):
        failures.append("something still in use afterwards")
    if exit_code != 0:
        failures.append(f"exit status {exit_code}")
    print("soak: " + ("OK" if not failures else "FAILED: " + "; ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
