"""Raw HTTP/1.x over TLS (or plain TCP) to a tiergate server, byte for byte, without a client
library smoothing it over: what an attacker or an odd client sends. Also starting a server on
127.0.0.1 with a state directory of its own and reading its /metrics. Used by the hardening and
churn tests (tests/integration, through its conftest.py) and by tools/soak.py."""
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BINARY = Path(os.environ.get("TIERGATE_BINARY", ROOT / "build/release/gateway/tiergate"))
MODEL = Path(os.environ.get("TIERGATE_MODEL", ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf"))


def require_model():
    import pytest
    if not MODEL.exists():
        message = f"model not found at {MODEL} (run tools/fetch_model.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def keys_add(state, *args):
    out = subprocess.run([str(BINARY), "keys", "add", "--state-dir", str(state), *args],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


class Server:
    """A tiergate serve process on 127.0.0.1 with its own state directory; stderr goes to a file."""

    def __init__(self, state, *flags, tls=True, preexec_fn=None, qos_text=None, add_keys=True):
        self.state = Path(state)
        self.state.mkdir(parents=True, exist_ok=True)
        self.qos = self.state / "qos_config.json"
        self.qos.write_text(qos_text or (ROOT / "config/qos_config.json").read_text())
        self.tls = tls
        self.keys = {
            "alice": keys_add(self.state, "--user", "user_id1"),
            "saas": keys_add(self.state, "--all-users"),
            "admin": keys_add(self.state, "--all-users", "--admin"),
        } if add_keys else {}
        self.log_path = self.state / "serve.log"
        cmd = [str(BINARY), "serve", str(MODEL), "--port", "0", "--state-dir", str(self.state),
               "--qos-config-path", str(self.qos)] + (["--insecure-http"] if not tls else []) + list(flags)
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True, preexec_fn=preexec_fn)
        line = self.proc.stdout.readline()
        match = re.search(r"https?://127\.0\.0\.1:(\d+)", line)
        if not match:
            self.proc.wait(timeout=30)
            raise AssertionError(f"server did not start: {line!r}\n{self.log_path.read_text()}")
        self.port = int(match.group(1))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            code = self.proc.wait(timeout=60)
            assert code == 0, f"exit status {code}\n{self.log_text()}"
        self.log.close()

    def log_text(self):
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def connect(self, source=None, timeout=30):
        return Conn(self.port, tls=self.tls, source=source, timeout=timeout)

    def request(self, method, path, body=None, key=None, headers=(), timeout=120):
        """One request on a fresh connection: (status, headers, body bytes)."""
        with self.connect(timeout=timeout) as c:
            c.send_request(method, path, body=body, key=self.keys[key] if key else None, headers=headers)
            return c.read_response()

    def json(self, method, path, body=None, key=None):
        status, _, data = self.request(method, path, body=json.dumps(body) if body is not None else None, key=key)
        return status, json.loads(data) if data.strip() else None

    def metrics(self, key="admin"):
        status, _, data = self.request("GET", "/metrics", key=key)
        assert status == 200, data
        return data.decode()

    def pid_fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def rss_kib(self):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def cpu_seconds(self):
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric_samples(text, name, **labels):
    """The values of every sample of `name` whose labels include `labels`."""
    found = []
    for line in text.splitlines():
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            found.append(float(m.group(4)))
    return found


def metric_value(text, name, **labels):
    """The value of one sample; labels given must match exactly (others may be present)."""
    found = metric_samples(text, name, **labels)
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return found[0]


class Conn:
    def __init__(self, port, tls=True, source=None, timeout=30, rcvbuf=None):
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source:
            raw.bind((source, 0))
        raw.settimeout(timeout)
        raw.connect(("127.0.0.1", port))
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            raw = ctx.wrap_socket(raw)
        self.sock = raw
        self.buf = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def send_request(self, method, path, body=None, key=None, headers=(), version="1.1", host=True):
        if isinstance(body, str):
            body = body.encode()
        lines = [f"{method} {path} HTTP/{version}"]
        if host:
            lines.append("Host: 127.0.0.1")
        if key:
            lines.append(f"Authorization: Bearer {key}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
            lines.append("Content-Type: application/json")
        lines += list(headers)
        self.send("\r\n".join(lines).encode() + b"\r\n\r\n" + (body or b""))

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def read_until(self, marker):
        while marker not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(marker)
        return head

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_head(self):
        head = self.read_until(b"\r\n\r\n").decode("latin-1")
        status_line, *header_lines = head.split("\r\n")
        status = int(status_line.split()[1])
        headers = {}
        for h in header_lines:
            k, _, v = h.partition(":")
            headers[k.strip().lower()] = v.strip()
        return status_line, status, headers

    def read_response(self):
        """(status, headers, body); 1xx interim answers are skipped."""
        while True:
            _, status, headers = self.read_head()
            if status >= 200:
                break
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self.read_until(b"\r\n")
                    break
                body += self.read_exact(size)
                self.read_exact(2)
            return status, headers, body
        if "content-length" in headers:
            return status, headers, self.read_exact(int(headers["content-length"]))
        return status, headers, self.read_to_close()

    def read_to_close(self):
        try:
            while True:
                self._fill()
        except (EOFError, ConnectionResetError, ssl.SSLError):
            pass
        data, self.buf = self.buf, b""
        return data

    def closed_by_peer(self, within):
        """True when the server closes this connection within `within` seconds (False if it stays open)."""
        self.sock.settimeout(within)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
            return True
        except (socket.timeout, TimeoutError):
            return False


def wait_for(predicate, seconds=30, step=0.1):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
