"""Issue 23: hostile output constraints against the real server. Each row of the table sends one
client-written program (guided_regex, guided_json, guided_choice, response_format, tools) built to
exhaust the server: recursion 20,000 deep, 100,000 stacked quantifiers, a $ref chain that doubles
28 times, huge enums and choice lists, a DFA that blows up, deep and wide schemas. Each must be
answered 400 naming the request field and the limit it passed (engine/grammar_limits.h), or served
with a few tokens; meanwhile another user's plain request is served; the server's peak RSS stays
under RSS_BOUND_KIB; and /health answers at the end. Last, SIGTERM while the costliest row is being
compiled stops the server within its shutdown deadline (README: running requests may finish for
30 s).

The model is the default weights under their template plus the `<tool_call>` marker (as in
test_tool_calls.py), so that the server takes `tools` and compiles their grammar."""
import json
import re
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

import gguf_file
from test_server import MODEL, keys_add
from tg_http import BINARY, ROOT, metric_value, wait_for

RSS_BOUND_KIB = 3 * 1024 * 1024  # the model is ~100 MiB; grammars are bounded in the tens of MiB each
SHUTDOWN_DEADLINE_S = 30 + 15    # the README's 30 s drain, and time to exit after it
CLIENT_TIMEOUT_S = 120           # no answer in this long is a failure, not a slow pass
MODEL_NAME = "smollm2-hermes-tools"


class Served:
    """A `tiergate serve` of the tools-capable model; stderr goes to a file (a pipe nobody reads
    would stall a chatty server)."""

    def __init__(self, state, model):
        state.mkdir(parents=True, exist_ok=True)
        qos = state / "qos_config.json"
        qos.write_text((ROOT / "config/qos_config.json").read_text())
        self.keys = {"alice": keys_add(state, "--user", "user_id1"), "saas": keys_add(state, "--all-users"),
                     "admin": keys_add(state, "--all-users", "--admin")}
        self.log_path = state / "serve.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([str(BINARY), "serve", str(model), "--port", "0", "--state-dir", str(state),
                                      "--qos-config-path", str(qos), "--kv-cache-blocks", "256", "--threads", "2"],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        match = re.search(r"https://127\.0\.0\.1:(\d+)", self.proc.stdout.readline())
        assert match, f"server did not start:\n{self.log_text()}"
        self.url = f"https://127.0.0.1:{match.group(1)}"

    def log_text(self):
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def post(self, body, key="alice"):
        with httpx.Client(verify=False, timeout=CLIENT_TIMEOUT_S) as c:
            return c.post(self.url + "/v1/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {self.keys[key]}"})

    def health(self):
        with httpx.Client(verify=False, timeout=30) as c:
            return c.get(self.url + "/health").status_code

    def requests_in_flight(self):
        """Requests read and not yet answered, this /metrics request among them."""
        with httpx.Client(verify=False, timeout=30) as c:
            text = c.get(self.url + "/metrics", headers={"Authorization": f"Bearer {self.keys['admin']}"}).text
        return metric_value(text, "tiergate_http_requests_in_flight")

    def peak_rss_kib(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM in /proc/<pid>/status")

    def stop(self, deadline_s):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=deadline_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"the server did not stop within {deadline_s} s of SIGTERM\n{self.log_text()[-4000:]}")
            assert code == 0, f"exit status {code}\n{self.log_text()[-4000:]}"
        self.log.close()


@pytest.fixture(scope="module")
def tools_model(tmp_path_factory):
    if not MODEL.is_file():
        pytest.fail(f"model not found at {MODEL} (run tools/fetch_model.sh, or set TIERGATE_MODEL)")
    model = tmp_path_factory.mktemp("model") / f"{MODEL_NAME}.gguf"
    gguf_file.with_chat_template(MODEL, model, gguf_file.chat_template(MODEL) + "{# <tool_call> #}")
    return model


@pytest.fixture(scope="module")
def server(tmp_path_factory, tools_model):
    s = Served(tmp_path_factory.mktemp("state"), tools_model)
    yield s
    s.stop(SHUTDOWN_DEADLINE_S)


# --- the hostile specs ----------------------------------------------------------------------------

def ref_chain(levels=28):
    """Each definition an anyOf of two $refs to the next: 2 KB of schema, 2^28 paths."""
    defs = {f"d{i}": {"anyOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]} for i in range(levels)}
    defs[f"d{levels}"] = {"type": "string"}
    return {"$defs": defs, "$ref": "#/$defs/d0"}


def deep_schema(levels=200):
    s = {"type": "integer"}
    for _ in range(levels):
        s = {"type": "object", "properties": {"a": s}, "required": ["a"]}
    return s


def wide_object(properties=5000):
    return {"type": "object", "additionalProperties": False, "required": [f"p{i}" for i in range(properties)],
            "properties": {f"p{i}": {"type": "integer"} for i in range(properties)}}


HOSTILE_TOOL = {"type": "function", "function": {"name": "hostile", "parameters": {
    "type": "object", "additionalProperties": False, "required": ["x"], "$defs": ref_chain()["$defs"],
    "properties": {"x": {"$ref": "#/$defs/d0"}}}}}

# (id, extra request fields, the field a refusal names, what is allowed: "refused", "served" or "either")
ROWS = [
    ("regex_deep_groups", {"guided_regex": "(" * 20000 + "a" + ")" * 20000}, "guided_regex", "refused"),
    ("regex_100k_stars", {"guided_regex": "a" + "*" * 100000}, "guided_regex", "refused"),
    ("regex_counted_counted", {"guided_regex": "a{1000}{1000}"}, "guided_regex", "refused"),
    ("regex_nested_counts", {"guided_regex": "(a{1000}){1000}"}, "guided_regex", "refused"),
    ("regex_over_source_limit", {"guided_regex": "a" * (64 * 1024 + 1)}, "guided_regex", "refused"),
    ("regex_dfa_blowup", {"guided_regex": "(a|b)*a(a|b){20}"}, "guided_regex", "served"),
    # Just under the NFA limit, with closures of ~95,000 states: the costliest compile found.
    ("regex_large_closures", {"guided_regex": "(?:[ -~]{0,1000}){0,95}"}, "guided_regex", "either"),
    ("json_ref_chain_28", {"guided_json": ref_chain()}, "guided_json", "refused"),
    ("json_huge_enum", {"guided_json": {"enum": [f"value{i}" for i in range(20000)]}}, "guided_json", "refused"),
    ("json_deep_200", {"guided_json": deep_schema()}, "guided_json", "refused"),
    ("choice_100k", {"guided_choice": [f"choice{i}" for i in range(100000)]}, "guided_choice", "refused"),
    ("response_format_5000_properties",
     {"response_format": {"type": "json_schema", "json_schema": {"name": "wide", "strict": True, "schema": wide_object()}}},
     "response_format", "refused"),
    ("tools_ref_chain", {"tools": [HOSTILE_TOOL], "tool_choice": "required"}, "tools", "refused"),
]

MEASURED = {}  # row id -> seconds the hostile request took, for the shutdown test's choice and the log


def hostile_body(extra):
    return {"model": MODEL_NAME, "max_tokens": 8, "temperature": 0,
            "messages": [{"role": "user", "content": "Answer."}], **extra}


def bystander(server):
    """Another user's plain request: (status, seconds)."""
    start = time.monotonic()
    r = server.post({"model": MODEL_NAME, "max_tokens": 4, "temperature": 0, "user": "user_id2",
                     "messages": [{"role": "user", "content": "Say hi."}]}, key="saas")
    return r.status_code, time.monotonic() - start


@pytest.mark.parametrize("name,extra,param,allowed", ROWS, ids=[r[0] for r in ROWS])
def test_hostile_constraint_is_refused_or_served_within_budget(server, name, extra, param, allowed):
    body = hostile_body(extra)
    with ThreadPoolExecutor(2) as pool:
        start = time.monotonic()
        hostile = pool.submit(server.post, body)
        other = pool.submit(bystander, server)
        try:
            r = hostile.result()
        except httpx.HTTPError as e:
            pytest.fail(f"{name}: no answer ({e!r}); server exit status {server.proc.poll()}\n{server.log_text()[-4000:]}")
        MEASURED[name] = time.monotonic() - start
        other_status, other_s = other.result()
    peak = server.peak_rss_kib()
    print(f"{name}: {r.status_code} in {MEASURED[name]:.2f} s ({len(json.dumps(body)) // 1024} KiB body); "
          f"bystander {other_status} in {other_s:.2f} s; server VmHWM {peak // 1024} MiB")
    if r.status_code == 400:
        assert allowed in ("refused", "either"), f"{name} was refused: {r.text[:500]}"
        error = r.json()["error"]
        assert error["param"] == param, error
        assert re.search(r"limit of \d+|multiple repeat", error["message"]), error
    else:
        assert r.status_code == 200 and allowed in ("served", "either"), f"{name}: {r.status_code} {r.text[:500]}"
        assert r.json()["choices"][0]["finish_reason"] in ("stop", "length"), r.text[:500]
    assert other_status == 200, f"the bystander's plain request got {other_status} while {name} was sent"
    assert peak < RSS_BOUND_KIB, f"{name}: server peak RSS {peak // 1024} MiB, past {RSS_BOUND_KIB // 1024} MiB"
    assert server.health() == 200, f"the server stopped answering after {name}\n{server.log_text()[-4000:]}"


def test_the_server_is_alive_after_the_table(server):
    assert server.health() == 200
    print(f"server VmHWM after every row: {server.peak_rss_kib() // 1024} MiB; "
          f"slowest rows: {sorted(MEASURED.items(), key=lambda kv: -kv[1])[:3]}")


# The row whose compile took longest when this module was written (about 0.7 s of its ~1 s answer on
# a 2-core machine; the refused rows take 0.01-0.35 s): see the table's printed times.
SLOWEST_ROW = "regex_large_closures"


def test_sigterm_during_a_slow_compile_stops_within_the_deadline(tmp_path_factory, tools_model):
    # A server of its own, since this one is stopped. The signal is sent once the server has read
    # the hostile request (or it has been answered already, where its compile is quicker than the
    # metrics poll): either way the server must answer or drop it and exit 0 within its deadline;
    # the compile must not hold the drain open.
    s = Served(tmp_path_factory.mktemp("sigterm"), tools_model)
    extra = next(row[1] for row in ROWS if row[0] == SLOWEST_ROW)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(s.post, hostile_body(extra))
        assert wait_for(lambda: pending.done() or s.requests_in_flight() >= 2, seconds=60, step=0.02), \
            f"the server never read the {SLOWEST_ROW} request (60 s)"
        in_compile = not pending.done()
        start = time.monotonic()
        s.stop(SHUTDOWN_DEADLINE_S)
        stopped = time.monotonic() - start
        try:
            status = pending.result(timeout=CLIENT_TIMEOUT_S).status_code
        except httpx.HTTPError as e:  # dropped at exit
            status = type(e).__name__
    print(f"SIGTERM with {SLOWEST_ROW} {'in flight' if in_compile else 'already answered'}: "
          f"stopped in {stopped:.2f} s; the request got {status}")
    assert status in (200, 400, 503) or isinstance(status, str), status
