"""QoS over HTTP on the real server: strict priority holds a lower group back every step, a full
group queue answers 429 with Retry-After, a request that waited past its group's bound answers 503
with the OpenAI error body (streaming or not: nothing was streamed, so the status says it), and
SIGTERM answers every queued request 503 while the running ones finish.

Each test starts its own server (one sequence a step, so a running Platinum stream leaves Bronze
no room) and stops it; loopback only, bounded waits."""
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("TIERGATE_BINARY", ROOT / "build/release/gateway/tiergate"))
MODEL = Path(os.environ.get("TIERGATE_MODEL", ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf"))

CONFIG = {
    "enable_user_qos": True,
    "user_groups": ["Platinum", "Bronze"],
    "user_group_map": {"Platinum": [{"id": "user_id0", "quota_pct": 100}],
                       "Bronze": [{"id": "user_id4", "quota_pct": 100}]},
    "group_limits": {"Bronze": {"max_queued": 1, "max_queue_wait_s": 3, "retry_after_s": 7}},
}


def start_server(tmp_path):
    assert MODEL.exists(), f"model not found at {MODEL} (run tools/fetch_model.sh)"
    state = tmp_path / "state"
    state.mkdir()
    qos = state / "qos_config.json"
    qos.write_text(json.dumps(CONFIG))
    key = subprocess.run([str(BINARY), "keys", "add", "--state-dir", str(state), "--all-users", "--admin"],
                         check=True, capture_output=True, text=True).stdout.strip()
    proc = subprocess.Popen([str(BINARY), "serve", str(MODEL), "--port", "0", "--state-dir", str(state),
                             "--qos-config-path", str(qos), "--kv-cache-blocks", "256", "--threads", "2",
                             "--max-num-seqs", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    match = re.search(r"https://127\.0\.0\.1:(\d+)", line)
    assert match, f"server did not start: {line!r}"
    return proc, f"https://127.0.0.1:{match.group(1)}", key


@pytest.fixture
def server(tmp_path):
    proc, url, key = start_server(tmp_path)
    client = httpx.Client(base_url=url, verify=False, timeout=120, headers={"Authorization": f"Bearer {key}"})
    yield {"proc": proc, "client": client}
    client.close()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def chat(user, max_tokens, stream):
    return {"messages": [{"role": "user", "content": "Tell a story."}], "user": user, "max_tokens": max_tokens,
            "ignore_eos": True, "temperature": 0, "stream": stream}


class Stream(threading.Thread):
    """A streaming request in the background: its status, its events, when its first event came."""

    def __init__(self, client, body):
        super().__init__(daemon=True)
        self.client, self.body = client, body
        self.status, self.text, self.first_event = None, "", threading.Event()
        self.stop = threading.Event()

    def run(self):
        with self.client.stream("POST", "/v1/chat/completions", json=self.body) as r:
            self.status = r.status_code
            for chunk in r.iter_text():
                self.text += chunk
                self.first_event.set()
                if self.stop.is_set():
                    break
        self.first_event.set()


def waiting(client, group):
    text = client.get("/metrics").text
    match = re.search(r'tiergate_queue_waiting\{group="%s"\} (\d+)' % group, text)
    return int(match.group(1))


def wait_until(predicate, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def start_platinum_stream(client, max_tokens):
    platinum = Stream(client, chat("user_id0", max_tokens, True))
    platinum.start()
    assert platinum.first_event.wait(60) and platinum.status == 200
    return platinum


def test_full_queue_is_429_and_a_request_past_its_wait_bound_is_503_streaming_or_not(server):
    client = server["client"]
    platinum = start_platinum_stream(client, 2000)  # holds the one sequence a step
    queued = Stream(client, chat("user_id4", 8, True))
    queued.start()
    assert wait_until(lambda: waiting(client, "Bronze") == 1)
    # Bronze holds one waiting request: the next is refused at once, with when to come back.
    full = client.post("/v1/chat/completions", json=chat("user_id4", 8, False))
    assert full.status_code == 429
    assert full.headers["Retry-After"] == "7"
    assert full.json()["error"]["code"] == "queue_full"
    # The queued streaming request never ran: past the 3 s bound it is a 503, not a 200 stream.
    queued.join(60)
    assert queued.status == 503, queued.text
    assert json.loads(queued.text)["error"]["code"] == "queue_timeout"
    # The same for a request that wants its whole response at once.
    expired = client.post("/v1/chat/completions", json=chat("user_id4", 8, False))
    assert expired.status_code == 503
    assert expired.json()["error"]["code"] == "queue_timeout"
    assert platinum.is_alive()  # strict priority held Bronze back every step meanwhile
    platinum.stop.set()


def test_sigterm_answers_queued_requests_503_and_lets_running_ones_finish(server):
    client, proc = server["client"], server["proc"]
    # Long enough to hold the one sequence while Bronze queues behind it (12 tokens were done in
    # 0.25 s on an AVX-512 EPYC, before Bronze had queued), and done well within the 30 s shutdown
    # deadline on a machine several times slower (about 4 s here).
    platinum = start_platinum_stream(client, 400)
    queued = Stream(client, chat("user_id4", 8, True))
    queued.start()
    assert wait_until(lambda: waiting(client, "Bronze") == 1)
    proc.send_signal(signal.SIGTERM)
    queued.join(30)
    assert queued.status == 503, queued.text
    assert json.loads(queued.text)["error"]["code"] == "server_shutting_down"
    platinum.join(60)
    assert platinum.text.rstrip().endswith("data: [DONE]")
    assert proc.wait(timeout=60) == 0
