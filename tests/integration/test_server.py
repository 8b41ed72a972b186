"""The real server on 127.0.0.1 over TLS, spoken to as clients would: the official `openai` Python
package and curl. Started once per module with a fresh state directory (keys, self-signed
certificate) and stopped with SIGTERM, which must exit 0 (graceful shutdown).

Run by ctest through tests/integration/run.sh (the venv with `openai` and `pytest` is set up by
tools/test.sh). Needs the model TIERGATE_MODEL names, like the C++ tests (default: the one
tools/fetch_model.sh fetches); without it every test fails rather than skips, so that a run without
the model cannot pass (run.sh decides, before pytest, whether ctest reports a skip instead)."""
import json
import os
import re
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("TIERGATE_BINARY", ROOT / "build/release/gateway/tiergate"))
MODEL = Path(os.environ.get("TIERGATE_MODEL") or ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf")


def keys_add(state, *args):
    out = subprocess.run([str(BINARY), "keys", "add", "--state-dir", str(state), *args],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


SESSION_TTL_S = 5  # short, so the expiry test need not wait long


def serve(tmp_path_factory, model=MODEL):
    """A server of `model` with a fresh state directory: yields its url, keys and process."""
    if not model.is_file():
        pytest.fail(f"model not found at {model} (run tools/fetch_model.sh, or set TIERGATE_MODEL)")
    state = tmp_path_factory.mktemp("state")
    qos = state / "qos_config.json"
    qos.write_text((ROOT / "config/qos_config.json").read_text())
    keys = {
        "alice": keys_add(state, "--user", "user_id1"),
        "saas": keys_add(state, "--all-users"),
        "admin": keys_add(state, "--all-users", "--admin"),
    }
    proc = subprocess.Popen([str(BINARY), "serve", str(model), "--port", "0", "--state-dir", str(state),
                             "--qos-config-path", str(qos), "--kv-cache-blocks", "256", "--threads", "2",
                             "--session-ttl", str(SESSION_TTL_S)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    match = re.search(r"https://127\.0\.0\.1:(\d+)", line)
    assert match, f"server did not start: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
    url = f"https://127.0.0.1:{match.group(1)}"
    yield {"url": url, "keys": keys, "proc": proc, "qos": qos, "state": state}
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve(tmp_path_factory)


def client(server, key="alice"):
    return openai.OpenAI(base_url=server["url"] + "/v1", api_key=server["keys"][key],
                         http_client=httpx.Client(verify=False, timeout=120))


def curl(server, path, *args, key=None, body=None, method=None):
    cmd = ["curl", "-sk", "-o", "-", "-w", "\n%{http_code}", server["url"] + path]
    if key:
        cmd += ["-H", f"Authorization: Bearer {server['keys'][key]}"]
    if body is not None:
        cmd += ["-H", "Content-Type: application/json", "--data-binary", body if isinstance(body, str) else json.dumps(body)]
    if method:
        cmd += ["-X", method]
    out = subprocess.run(cmd + list(args), check=True, capture_output=True, text=True).stdout
    text, _, status = out.rpartition("\n")
    return int(status), text


# --- the openai package -------------------------------------------------------------------------

def test_chat_completion(server):
    r = client(server).chat.completions.create(model=MODEL.stem, max_tokens=8, temperature=0,
                                               messages=[{"role": "user", "content": "What is 2+2?"}])
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 8 and r.usage.prompt_tokens > 0


def test_chat_streaming_with_usage(server):
    stream = client(server).chat.completions.create(model=MODEL.stem, max_tokens=6, temperature=0, stream=True,
                                                    stream_options={"include_usage": True},
                                                    messages=[{"role": "user", "content": "Say hello"}])
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    assert text and finish in ("stop", "length") and usage.completion_tokens <= 6


def test_streaming_equals_non_streaming(server):
    c = client(server)
    args = dict(model=MODEL.stem, max_tokens=12, temperature=0, messages=[{"role": "user", "content": "Name a fruit."}])
    whole = c.chat.completions.create(**args).choices[0].message.content
    streamed = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(stream=True, **args)
                       if ch.choices)
    assert whole == streamed


def test_completions_n2_and_stop(server):
    r = client(server).completions.create(model=MODEL.stem, prompt="1, 2, 3,", max_tokens=12, temperature=0, n=2,
                                          stop=[" 6"])
    assert len(r.choices) == 2
    for choice in r.choices:
        assert " 6" not in choice.text
        assert choice.text.startswith(" 4,")
        assert choice.finish_reason == "stop"


def test_seeded_sampling_is_reproducible_whatever_the_batch(server):
    """A seeded request gives the same text alone and batched with other running requests."""
    c = client(server)
    args = dict(model=MODEL.stem, prompt="Once upon a time", max_tokens=10, temperature=0.9, top_p=0.9, seed=42)
    alone = c.completions.create(**args).choices[0].text
    assert wait_for_metric(server, lambda m: m["active_blocks"] == 0), "the server is not idle"
    seeded_answered = threading.Event()

    def background(prompt):
        """Other traffic, a hundred times longer than the seeded requests (they need not be sent
        promptly to meet it running), closed once they are answered: the server cancels it."""
        stream = client(server).completions.create(model=MODEL.stem, prompt=prompt, max_tokens=1000, temperature=1.0,
                                                   stream=True, extra_body={"ignore_eos": True})
        finish = None
        try:
            for chunk in stream:
                finish = next((ch.finish_reason for ch in chunk.choices if ch.finish_reason), finish)
                if finish or seeded_answered.is_set():
                    break
        finally:
            stream.close()
        return finish

    def seeded(_):
        return client(server).completions.create(**args).choices[0].text

    with ThreadPoolExecutor(max_workers=7) as pool:
        others = [pool.submit(background, p) for p in ("The history of", "def main():", "Dear diary,")]
        try:
            assert wait_for_metric(server, lambda m: m["running"] >= 3, seconds=60), "the other traffic never ran"
            batched = list(pool.map(seeded, range(4)))  # concurrent with each other and with the others
            after = engine_metrics(server)
        finally:
            seeded_answered.set()
        finished = [f.result() for f in others]
    assert batched == [alone] * 4
    # The seeded requests ran batched with the others: by the server's count those were running
    # before the seeded ones were sent and still were once they were all answered, none finished.
    assert after["running"] >= 3, f"the other traffic was no longer running when the seeded requests were answered: {after}"
    assert finished == [None] * 3, f"other traffic finished before the seeded requests were answered: {finished}"
    assert wait_for_metric(server, lambda m: m["running"] == 0 and m["active_blocks"] == 0, seconds=60), \
        "the closed streams were not cancelled"


def test_errors_surface_as_openai_exceptions(server):
    bad_key = openai.OpenAI(base_url=server["url"] + "/v1", api_key="tg-wrong",
                            http_client=httpx.Client(verify=False))
    with pytest.raises(openai.AuthenticationError):
        bad_key.models.list()
    with pytest.raises(openai.PermissionDeniedError):  # alice may not act for user_id2
        client(server).completions.create(model=MODEL.stem, prompt="x", max_tokens=2, user="user_id2")
    with pytest.raises(openai.BadRequestError) as e:
        client(server).completions.create(model=MODEL.stem, prompt="x", max_tokens=-1)
    assert e.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError) as e:
        client(server).chat.completions.create(model=MODEL.stem, temperature=5, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.NotFoundError):
        client(server).completions.create(model="no-such-model", prompt="x", max_tokens=2)


def test_models_list(server):
    assert [m.id for m in client(server).models.list().data] == [MODEL.stem]


# --- curl over TLS, every route --------------------------------------------------------------------

def test_health_and_metrics(server):
    assert curl(server, "/health") == (200, '{"status": "ok"}')
    status, text = curl(server, "/metrics", key="admin")
    assert status == 200 and "tiergate_requests_total" in text and 'tiergate_kv_blocks{state="active"}' in text
    # The generations of the earlier tests show up in the latency histograms.
    assert int(re.search(r"tiergate_time_to_first_token_seconds_count (\d+)", text).group(1)) > 0
    assert int(re.search(r"tiergate_inter_token_seconds_count (\d+)", text).group(1)) > 0
    assert re.search(r'tiergate_queue_wait_seconds_count\{group="Gold"\} [1-9]', text)


def test_auth_is_required_and_checked(server):
    assert curl(server, "/v1/models")[0] == 401
    status, text = curl(server, "/v1/models", "-H", "Authorization: Bearer tg-nope")
    assert status == 401 and json.loads(text)["error"]["code"] == "invalid_api_key"


def test_qos_routes_with_lmdeploy_bodies(server):
    body = {"messages": "Hello", "user_id": "user_id4", "request_output_len": 4, "stop": False, "session_id": -1,
            "interactive_mode": False, "ignore_eos": False}
    status, text = curl(server, "/v1/chat/completions_qos", key="saas", body=body)
    assert status == 200, text
    assert json.loads(text)["usage"]["completion_tokens"] <= 4
    status, text = curl(server, "/v1/completions_qos", key="saas",
                        body={"prompt": "Hello", "user_id": "user_id5", "max_tokens": 3})
    assert status == 200, text
    # The QoS routes need the user when QoS is on.
    assert curl(server, "/v1/completions_qos", key="saas", body={"prompt": "Hello"})[0] == 400
    # A spoofed user_id is refused for a customer key.
    assert curl(server, "/v1/completions_qos", key="alice", body={"prompt": "Hi", "user_id": "user_id0"})[0] == 403


def test_bad_requests(server):
    status, text = curl(server, "/v1/chat/completions", key="alice", body="{not json")
    assert status == 400 and "not valid JSON" in json.loads(text)["error"]["message"]
    assert curl(server, "/v1/chat/completions", key="alice", body={"messages": [], "max_tokens": 2})[0] == 400
    status, text = curl(server, "/v1/completions", key="alice", body={"prompt": "x", "max_tokens": -5})
    assert status == 400 and json.loads(text)["error"]["param"] == "max_tokens"
    assert curl(server, "/v1/completions", key="alice", body={"prompt": "x", "top_p": "high"})[0] == 400
    assert curl(server, "/nope")[0] == 404
    assert curl(server, "/v1/completions", key="alice", method="GET")[0] == 405
    huge = server["state"] / "huge.json"
    huge.write_text(json.dumps({"prompt": "x" * (5 << 20)}))
    assert curl(server, "/v1/completions", "--data-binary", f"@{huge}", key="alice")[0] == 413


def test_admin_routes(server):
    assert curl(server, "/admin/qos", key="alice")[0] == 403
    status, text = curl(server, "/admin/qos", key="admin")
    assert status == 200
    report = json.loads(text)
    assert report["config"]["user_groups"] == ["Platinum", "Gold", "Silver", "Bronze"]
    assert any(u["user_id"] == "user_id1" for u in report["usage"]["users"])


def test_reload_keeps_old_config_on_a_bad_file(server):
    qos = server["qos"]
    good = qos.read_text()
    # The server also reloads when the file's modification time changes (polled each second): the
    # edits for the explicit reloads keep the time the server last saw, so that only the request
    # (or the signal) under test can have reloaded them.
    seen = qos.stat().st_mtime_ns

    def edit_unseen(text):
        qos.write_text(text)
        os.utime(qos, ns=(seen, seen))

    edit_unseen(good.replace('"quota_pct": 5}', '"quota_pct": -5}'))
    status, text = curl(server, "/admin/qos/reload", key="admin", method="POST")
    assert status == 400 and "$.user_group_map.Silver[0].quota_pct" in json.loads(text)["error"]["message"]
    assert curl(server, "/admin/qos", key="admin")[0] == 200
    new = json.loads(good)
    new["user_group_map"]["Gold"].append({"id": "newcomer", "quota_pct": 10})
    edit_unseen(json.dumps(new))
    assert curl(server, "/admin/qos/reload", key="admin", method="POST")[0] == 200
    assert "newcomer" in curl(server, "/admin/qos", key="admin")[1]
    edit_unseen(good)
    server["proc"].send_signal(signal.SIGHUP)  # the same through the signal
    assert poll(lambda: "newcomer" not in curl(server, "/admin/qos", key="admin")[1]), "SIGHUP did not reload"
    # ... and by editing the file (a new modification time): the server notices within seconds.
    qos.write_text(json.dumps(new))
    assert qos.stat().st_mtime_ns != seen
    assert poll(lambda: "newcomer" in curl(server, "/admin/qos", key="admin")[1]), "the edited file was not reloaded"
    qos.write_text(good)
    assert poll(lambda: "newcomer" not in curl(server, "/admin/qos", key="admin")[1])
    assert curl(server, "/health")[0] == 200


def poll(condition, seconds=5.0):
    """True as soon as condition() holds, False if it still does not after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def engine_metrics(server):
    text = curl(server, "/metrics", key="admin")[1]
    return {"active_blocks": int(re.search(r'^tiergate_kv_blocks\{state="active"\} (\d+)$', text, re.M).group(1)),
            "running": sum(int(v) for v in re.findall(r'^tiergate_running\{group="[^"]*"\} (\d+)$', text, re.M)),
            "generated": int(re.search(r"^tiergate_tokens_generated_total (\d+)$", text, re.M).group(1))}


def wait_for_metric(server, condition, seconds=5.0):
    return poll(lambda: condition(engine_metrics(server)), seconds)


def long_generation(server, path, body, *curl_args):
    """Starts curl on a 3000-token generation (half a minute or more here) once the server is idle,
    and returns it after the request is running: its KV blocks are the only active ones."""
    assert wait_for_metric(server, lambda m: m["active_blocks"] == 0 and m["running"] == 0), "the server is not idle"
    proc = subprocess.Popen(["curl", "-sk", *curl_args, server["url"] + path, "-H",
                             f"Authorization: Bearer {server['keys']['alice']}", "--data-binary", json.dumps(body)],
                            stdout=subprocess.PIPE)
    assert wait_for_metric(server, lambda m: m["active_blocks"] > 0 and m["running"] == 1, seconds=30), \
        "the request never ran"
    return proc


def assert_cancelled_and_freed(server, proc):
    """Kills the client; the server must stop generating and free every block at once, long before
    the 3000 tokens a finished request would take."""
    proc.kill()
    proc.wait()
    assert wait_for_metric(server, lambda m: m["active_blocks"] == 0 and m["running"] == 0), \
        f"blocks still held after the client left: {engine_metrics(server)}"
    generated = engine_metrics(server)["generated"]
    time.sleep(0.5)
    assert engine_metrics(server)["generated"] == generated, "still generating for a client that left"


def test_disconnect_mid_stream_frees_kv_blocks(server):
    body = {"messages": [{"role": "user", "content": "Tell a long story."}], "max_tokens": 3000, "ignore_eos": True,
            "stream": True}
    proc = long_generation(server, "/v1/chat/completions", body, "-N")
    assert proc.stdout.readline().startswith(b"data: ")
    assert_cancelled_and_freed(server, proc)


def test_disconnect_while_waiting_for_a_whole_response_cancels_it(server):
    body = {"prompt": "Once upon a time", "max_tokens": 3000, "ignore_eos": True}
    proc = long_generation(server, "/v1/completions", body)
    assert_cancelled_and_freed(server, proc)
    assert curl(server, "/metrics", key="admin")[0] == 200


def test_keep_alive_serves_several_requests_on_one_connection(server):
    args = []
    for _ in range(3):
        args += ["--next", "-sk", "-H", f"Authorization: Bearer {server['keys']['alice']}", server["url"] + "/v1/models"]
    out = subprocess.run(["curl", "-sk", server["url"] + "/health"] + args, check=True, capture_output=True, text=True).stdout
    assert out.count(MODEL.stem) == 3


def test_interactive_qos_keeps_the_session_history(server):
    def turn(prompt, interactive, stream=False):
        body = {"prompt": prompt, "session_id": 7, "interactive_mode": interactive, "request_output_len": 8,
                "temperature": 0, "user_id": "user_id4", "stop": False, "stream": stream}
        status, text = curl(server, "/v1/chat/interactive_qos", key="saas", body=body)
        assert status == 200, text
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    first = turn("My name is Ada.", True)[-1]
    assert first["history_tokens"] == 0 and first["tokens"] <= 8
    second = turn("What is my name?", True)[-1]
    assert second["history_tokens"] == first["input_tokens"] + first["tokens"]
    # The model saw the whole conversation: the same prompt as the plain chat route builds from it.
    conversation = [{"role": "user", "content": "My name is Ada."}, {"role": "assistant", "content": first["text"]},
                    {"role": "user", "content": "What is my name?"}]
    replayed = client(server).chat.completions.create(model=MODEL.stem, max_tokens=1, messages=conversation)
    assert second["input_tokens"] == replayed.usage.prompt_tokens
    streamed = turn("Thanks.", False, stream=True)  # the last turn of the session
    assert streamed[-1]["finish_reason"] in ("stop", "length")
    assert "".join(s["text"] for s in streamed)
    assert turn("Hello again.", False)[-1]["history_tokens"] == 0  # a new session


def metric(server, name):
    _, text = curl(server, "/metrics", key="admin")
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    assert len(values) == 1, f"{name} not in /metrics"
    return values[0]


def test_idle_interactive_sessions_expire(server):
    def turn(prompt):
        body = {"prompt": prompt, "session_id": 8, "interactive_mode": True, "request_output_len": 4,
                "temperature": 0, "user_id": "user_id4"}
        status, text = curl(server, "/v1/chat/interactive_qos", key="saas", body=body)
        assert status == 200, text
        return json.loads(text.splitlines()[-1])
    turn("Remember the number 42.")
    assert metric(server, "tiergate_interactive_sessions") >= 1
    assert turn("Which number?")["history_tokens"] > 0
    expired_before = metric(server, "tiergate_interactive_sessions_expired_total")
    time.sleep(SESSION_TTL_S + 1.5)
    assert turn("Which number now?")["history_tokens"] == 0  # forgotten: it starts afresh
    assert metric(server, "tiergate_interactive_sessions_expired_total") >= expired_before + 1


def test_readme_examples_run(server):
    """The curl examples of README.md's Serving section, run as written against this server."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Serving", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^curl .*?(?<!\\)$", section.replace("\\\n", " "), flags=re.M)
    assert len(commands) >= 3
    port = server["url"].rsplit(":", 1)[1]
    env = dict(os.environ, KEY=server["keys"]["alice"], SAAS_KEY=server["keys"]["saas"])
    for command in commands:
        command = command.replace("127.0.0.1:8443", "127.0.0.1:" + port)
        # A bound for a hung request, not a speed test: the streamed example may generate 512
        # tokens, which took past 120 s on a loaded 2-core machine.
        out = subprocess.run(["bash", "-c", command + " -w '\\n%{http_code}'"], env=env, capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, command
        body, _, status = out.stdout.rpartition("\n")
        assert status == "200", (command, body)
        assert '"choices"' in body or "data: " in body, body
