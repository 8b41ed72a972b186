"""The tiergate server qosbench talks to: started here on 127.0.0.1 with a fresh state directory
(API keys, self-signed certificate, the QoS config of the run), or an already running one given by
URL (loopback only). Stopped with SIGTERM; its stderr is kept next to the results."""
import ipaddress
import json
import os
import re
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BINARY = ROOT / "build/release/gateway/tiergate"
DEFAULT_MODEL = ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf"


class ServerError(Exception):
    pass


def require_loopback(url):
    host = urllib.parse.urlparse(url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ServerError(f"{url}: qosbench only talks to loopback addresses (127.0.0.0/8, ::1, localhost)")


class Server:
    """url, keys {"admin", "any_user", "users": {user: key}}, ssl context, qos_config_path."""

    def __init__(self, url, keys, cafile=None, qos_config_path=None, proc=None, log_path=None):
        require_loopback(url)
        self.url = url.rstrip("/")
        self.keys = keys
        self.qos_config_path = qos_config_path
        self.proc = proc
        self.log_path = log_path
        self.ssl = ssl.create_default_context(cafile=str(cafile)) if cafile else ssl.create_default_context()
        if not cafile:
            self.ssl.check_hostname = False
            self.ssl.verify_mode = ssl.CERT_NONE

    # --- small synchronous helpers (setup, polling between phases) -----------------------------
    def get(self, path, key=None, timeout=30):
        req = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {key or self.keys['admin']}"})
        with urllib.request.urlopen(req, context=self.ssl, timeout=timeout) as r:
            return r.read().decode()

    def post(self, path, body=b"", key=None, timeout=30):
        req = urllib.request.Request(self.url + path, data=body, method="POST",
                                     headers={"Authorization": f"Bearer {key or self.keys['admin']}"})
        try:
            with urllib.request.urlopen(req, context=self.ssl, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def admin_qos(self):
        return json.loads(self.get("/admin/qos"))

    def metrics(self):
        return self.get("/metrics")

    def wait_idle(self, timeout_s):
        """Until nothing waits or runs (True), or timeout_s passed (False)."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            groups = self.admin_qos()["usage"]["groups"]
            if all(g["waiting"] == 0 and g["running"] == 0 for g in groups):
                return True
            time.sleep(0.2)
        return False

    def reload(self, qos_config):
        if not self.qos_config_path:
            raise ServerError("a reload action needs the server's QoS config file (--qos-config-path)")
        tmp = Path(str(self.qos_config_path) + ".tmp")
        tmp.write_text(json.dumps(qos_config, indent=2))
        os.replace(tmp, self.qos_config_path)
        status, body = self.post("/admin/qos/reload")
        if status != 200:
            raise ServerError(f"reload refused ({status}): {body}")

    def stop(self):
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def keys_add(binary, state, *args):
    out = subprocess.run([str(binary), "keys", "add", "--state-dir", str(state), *args],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def start(binary, model, state, qos_config, server_opts, plain_route_users, log_path, timeout_s=120):
    """Starts `tiergate serve` on 127.0.0.1 (port chosen by the OS) with a fresh state dir."""
    binary, model, state = Path(binary), Path(model), Path(state)
    if not binary.exists():
        raise ServerError(f"{binary}: not built (bash tools/build.sh)")
    if not model.exists():
        raise ServerError(f"{model}: no model (bash tools/fetch_model.sh)")
    state.mkdir(parents=True, exist_ok=True)
    qos_path = state / "qos_config.json"
    qos_path.write_text(json.dumps(qos_config, indent=2))
    keys = {"admin": keys_add(binary, state, "--all-users", "--admin", "--name", "qosbench-admin"),
            "any_user": keys_add(binary, state, "--all-users", "--name", "qosbench-saas"),
            "users": {u: keys_add(binary, state, "--user", u, "--name", u) for u in sorted(plain_route_users)}}
    cmd = [str(binary), "serve", str(model), "--host", "127.0.0.1", "--port", "0", "--state-dir", str(state),
           "--qos-config-path", str(qos_path), "--kv-cache-blocks", str(server_opts["kv_cache_blocks"]),
           "--max-num-seqs", str(server_opts["max_num_seqs"]),
           "--max-num-batched-tokens", str(server_opts["max_num_batched_tokens"]),
           "--threads", str(server_opts["threads"])]
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    deadline = time.monotonic() + timeout_s
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line or proc.poll() is not None:
            break
    m = re.search(r"https://127\.0\.0\.1:(\d+)", line)
    if not m:
        proc.kill()
        raise ServerError(f"tiergate did not start: {line!r}; see {log_path}")
    server = Server(f"https://127.0.0.1:{m.group(1)}", keys, cafile=state / "tls/cert.pem",
                    qos_config_path=qos_path, proc=proc, log_path=log_path)
    # The certificate names localhost and 127.0.0.1; verify it (TLS as a client would see it).
    while time.monotonic() < deadline:
        try:
            if json.loads(server.get("/health", timeout=5)).get("status") == "ok":
                return server
        except OSError:
            pass
        time.sleep(0.2)
    server.stop()
    raise ServerError(f"tiergate did not become healthy in {timeout_s} s; see {log_path}")


def connect(url, keys_file, cafile=None, qos_config_path=None):
    """An already running server; keys_file: {"admin": ..., "any_user": ..., "users": {...}}."""
    keys = json.loads(Path(keys_file).read_text())
    if "admin" not in keys:
        raise ServerError(f"{keys_file}: needs an \"admin\" key (for /admin/qos and /metrics)")
    keys.setdefault("any_user", keys["admin"])
    keys.setdefault("users", {})
    return Server(url, keys, cafile=cafile, qos_config_path=qos_config_path)
