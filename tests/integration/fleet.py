"""A fleet on loopback for the tests: redis-server, N tiergate replicas and nginx round-robin in front,
all started here on free 127.0.0.1 ports and stopped by close() (SIGTERM, then SIGKILL), every wait
bounded. Load comes from tools/http_load (closed loop), shares from each replica's /admin/qos."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("TIERGATE_BINARY", ROOT / "build/release/gateway/tiergate"))
HTTP_LOAD = Path(os.environ.get("TIERGATE_HTTP_LOAD", ROOT / "build/release/tools/http_load/http-load"))
MODEL = Path(os.environ.get("TIERGATE_MODEL", ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf"))

GOLD_PAIR = {
    "enable_user_qos": True,
    "user_groups": ["Platinum", "Gold"],
    "user_group_map": {"Platinum": [{"id": "boss", "quota_pct": 100}],
                       "Gold": [{"id": "gold_a", "quota_pct": 50}, {"id": "gold_b", "quota_pct": 50}]},
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def stop_process(proc, seconds=20):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


class Redis:
    """`password`: started with --requirepass; `url` never carries it (replicas take it from
    TIERGATE_REDIS_PASSWORD, see Fleet's `env`)."""

    def __init__(self, tmp, password=None):
        self.port, self.tmp, self.proc, self.password = free_port(), tmp, None, password

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.tmp),
                                      *(["--requirepass", self.password] if self.password else [])],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith((b"+PONG", b"-NOAUTH"))
            except OSError:
                return False
        wait_until(up, 15, "redis-server")

    def cli(self, *args):
        """redis-cli's answer (stdout, stripped), with the password if there is one."""
        env = {**os.environ, **({"REDISCLI_AUTH": self.password} if self.password else {})}
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=10,
                              env=env).stdout.strip()

    def kill(self):  # a crash: nothing is saved (persistence is off), so it restarts empty
        self.proc.kill()
        self.proc.wait(timeout=10)

    def close(self):
        stop_process(self.proc)


class Fleet:
    """`replicas` tiergate processes (stand-in engine unless `model`), nginx round-robin over them."""

    def __init__(self, tmp, replicas=3, redis=None, stand_in=(16, 1600), model=False, config=GOLD_PAIR,
                 extra=(), env=None):
        self.tmp, self.redis, self.procs, self.urls, self.nginx = Path(tmp), redis, [], [], None
        self.logs = []
        state = self.tmp / "state"
        state.mkdir(exist_ok=True)
        qos = state / "qos_config.json"
        qos.write_text(json.dumps(config))
        keys = state / "api_keys.json"
        self.key = subprocess.run([str(BINARY), "keys", "add", "--api-keys-path", str(keys), "--all-users", "--admin"],
                                  check=True, capture_output=True, text=True).stdout.strip()
        try:
            for i in range(replicas):
                args = [str(BINARY), "serve", str(MODEL), "--port", "0", "--insecure-http", "--http-threads", "2",
                        "--state-dir", str(state / f"r{i}"), "--api-keys-path", str(keys), "--qos-config-path", str(qos),
                        *extra]
                if model:
                    args += ["--threads", "1", "--kv-cache-blocks", "512", "--max-num-seqs", "8"]
                else:
                    args += ["--stand-in-engine", str(stand_in[0]), "--stand-in-rate", str(stand_in[1])]
                if redis:
                    args += ["--redis-url", redis.url, "--redis-sync-ms", "50", "--redis-timeout-ms", "100",
                             "--replica-id", f"replica-{i}"]
                log = open(self.tmp / f"replica{i}.log", "w")
                self.logs.append(log)
                proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True,
                                        env={**os.environ, **(env or {})})
                self.procs.append(proc)
                line = proc.stdout.readline()
                match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
                assert match, f"replica {i} did not start: {line!r}; see {self.tmp}/replica{i}.log"
                self.urls.append(f"http://127.0.0.1:{match.group(1)}")
            self.port, self.first_port = free_port(), free_port()
            self._start_nginx()
        except BaseException:
            self.close()
            raise
        self.client = httpx.Client(timeout=30, headers={"Authorization": f"Bearer {self.key}"})

    @property
    def url(self):  # round-robin over the replicas
        return f"http://127.0.0.1:{self.port}"

    @property
    def first_url(self):  # always the first replica
        return f"http://127.0.0.1:{self.first_port}"

    def _start_nginx(self):
        # Two entrances: round-robin over every replica, and one pinned to the first replica (a
        # client whose traffic the balancer keeps on one replica, e.g. by affinity). nginx opens a
        # connection per request to the replicas (no upstream keep-alive), as its defaults do.
        upstreams = "\n".join(f"    server {u[len('http://'):]};" for u in self.urls)
        conf = self.tmp / "nginx.conf"
        proxy = """      proxy_buffering off;
      proxy_read_timeout 120s;"""
        conf.write_text(f"""worker_processes 1;
daemon off;
pid {self.tmp}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {self.tmp}/nginx_body;
  proxy_temp_path {self.tmp}/nginx_proxy;
  upstream fleet {{
{upstreams}
  }}
  upstream first {{
    server {self.urls[0][len('http://'):]};
  }}
  server {{
    listen 127.0.0.1:{self.port};
    location / {{
      proxy_pass http://fleet;
{proxy}
    }}
  }}
  server {{
    listen 127.0.0.1:{self.first_port};
    location / {{
      proxy_pass http://first;
{proxy}
    }}
  }}
}}
""")
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.nginx = subprocess.Popen([nginx, "-e", str(self.tmp / "nginx_error.log"), "-p", str(self.tmp),
                                       "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up():
            try:
                return all(httpx.get(u + "/health", timeout=1).status_code == 200 for u in (self.url, self.first_url))
            except httpx.HTTPError:
                return False
        wait_until(up, 15, "nginx")

    def served(self):
        """Weighted tokens served so far, per user, summed over the replicas (their own figures)."""
        total = {}
        for u in self.urls:
            for user in self.client.get(u + "/admin/qos").json()["usage"]["users"]:
                total[user["user_id"]] = total.get(user["user_id"], 0) + user["weighted_tokens"]
        return total

    def close(self):
        if getattr(self, "client", None):
            self.client.close()
        stop_process(self.nginx)
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            stop_process(p, 30)
        for log in self.logs:
            log.close()


class Load(threading.Thread):
    """http-load, closed loop: `connections` streams of one user's chat requests to `url`."""

    def __init__(self, url, key, user, connections, seconds, max_tokens=16):
        super().__init__(daemon=True)
        body = json.dumps({"messages": [{"role": "user", "content": "Say something."}], "user": user,
                           "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True})
        self.args = [str(HTTP_LOAD), url + "/v1/chat/completions", "--connections", str(connections), "--rate", "0",
                     "--seconds", str(seconds), "--warmup", "0", "--body", body,
                     "--header", f"Authorization: Bearer {key}", "--header", "Content-Type: application/json"]
        self.seconds, self.result, self.output = seconds, None, ""

    def run(self):
        proc = subprocess.run(self.args, capture_output=True, text=True, timeout=self.seconds + 120)
        self.output = proc.stdout + proc.stderr
        self.result = proc.returncode
        self.fields = dict(re.findall(r"(\w+)=(\S+)", proc.stdout))


class Sampler(threading.Thread):
    """Every second: fleet-wide weighted tokens per user, from the replicas' own accounts."""

    def __init__(self, fleet, seconds):
        super().__init__(daemon=True)
        self.fleet, self.seconds, self.samples = fleet, seconds, []

    def run(self):
        start = time.monotonic()
        client = httpx.Client(timeout=10, headers={"Authorization": f"Bearer {self.fleet.key}"})
        try:
            for i in range(int(self.seconds) + 1):
                time.sleep(max(0.0, start + i - time.monotonic()))
                total = {}
                for u in self.fleet.urls:
                    for user in client.get(u + "/admin/qos").json()["usage"]["users"]:
                        total[user["user_id"]] = total.get(user["user_id"], 0) + user["weighted_tokens"]
                self.samples.append((time.monotonic() - start, total))
        finally:
            client.close()

    def window_shares(self, user, other, start_s, end_s, window_s=10):
        """`user`'s share of the pair's weighted tokens over every window_s window (1 s steps) that
        starts at or after start_s and ends by end_s."""
        shares = []
        for i, (t0, a) in enumerate(self.samples):
            for t1, b in self.samples[i:]:
                if t0 >= start_s - 0.5 and t1 <= end_s + 0.5 and abs((t1 - t0) - window_s) < 0.5:
                    du, do = b.get(user, 0) - a.get(user, 0), b.get(other, 0) - a.get(other, 0)
                    shares.append((round(t0), du / (du + do) if du + do else 0.0))
        return shares
