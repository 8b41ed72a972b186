"""A fleet on loopback (tests/integration/fleet.py): redis-server, three tiergate replicas and nginx in
front, started and stopped here, every wait bounded.

Two Gold users at 50/50 with skewed traffic: gold_a only ever reaches the first replica (its own
entrance of the balancer), gold_b goes round-robin over all three; both are closed-loop clients
(tools/http_load). Per-replica fairness splits the first replica 50/50 while the other two serve
gold_b alone, so gold_a gets a quarter of the pair's weighted tokens; with the replicas sharing their
counters through Redis, the first replica makes up for what gold_b gets elsewhere and the fleet-wide
shares hold their quotas over every 10 s window. Shares are the replicas' own accounts (/admin/qos),
summed, sampled every second: the same measure with and without Redis.

The stand-in engine (fixed 16 tokens a request at 1600 tokens/s a replica) keeps the runs short; one
run uses the real model. Redis is killed mid-run and restarted empty: no request fails, /health says
degraded meanwhile, and the shares are back within 3 points within 10 s."""
import json
import subprocess
import time

import pytest

from fleet import BINARY, MODEL, Fleet, Load, Redis, Sampler, wait_until

A, B = "gold_a", "gold_b"
TOLERANCE = 0.03


def run_pair(fleet, seconds, a_streams=8, b_streams=24, max_tokens=16, during=None):
    """The skewed pair for `seconds`; `during(t0)` runs meanwhile (e.g. kills Redis). Returns the sampler."""
    loads = [Load(fleet.first_url, fleet.key, A, a_streams, seconds, max_tokens),
             Load(fleet.url, fleet.key, B, b_streams, seconds, max_tokens)]
    sampler = Sampler(fleet, seconds)
    for t in (*loads, sampler):
        t.start()
    if during:
        during()
    for t in (*loads, sampler):
        t.join(seconds + 180)
    for load in loads:  # zero failed requests, whatever happened meanwhile
        assert load.result == 0 and load.fields.get("errors") == "0", load.output
        assert int(load.fields["requests"]) > 0, load.output
    return sampler


def report(label, shares):
    print(f"\n{label}: gold_a's share over 10 s windows (start s: share) "
          + " ".join(f"{t}:{100 * s:.1f}" for t, s in shares))


@pytest.fixture
def redis(tmp_path):
    server = Redis(tmp_path)
    server.start()
    yield server
    server.close()


def test_fleet_wide_shares_hold_through_a_redis_outage(tmp_path, redis):
    fleet = Fleet(tmp_path, redis=redis)
    seconds, kill_at, restart_at = 46, 20, 24
    seen = {}

    def outage():
        time.sleep(kill_at)
        redis.kill()
        wait_until(lambda: fleet.client.get(fleet.urls[0] + "/health").json()["status"] == "degraded", 5,
                   "/health to say degraded")
        seen["health"] = fleet.client.get(fleet.urls[0] + "/health").json()
        time.sleep(max(0.0, restart_at - kill_at - 1))
        redis.start()  # empty: persistence is off
        wait_until(lambda: fleet.client.get(fleet.urls[0] + "/health").json()["status"] == "ok", 10,
                   "/health to say ok again")

    try:
        sampler = run_pair(fleet, seconds, during=outage)
        assert seen["health"]["fleet"]["state"] == "degraded"
        before = sampler.window_shares(A, B, 4, kill_at)
        after = sampler.window_shares(A, B, restart_at + 10, seconds)
        report("with Redis, before the outage", before)
        report("with Redis, 10 s after it came back", after)
        report("with Redis, every window", sampler.window_shares(A, B, 0, seconds))
        assert before and after
        for t, share in before + after:
            assert abs(share - 0.5) <= TOLERANCE, (t, share)
        metrics = fleet.client.get(fleet.urls[0] + "/metrics").text
        failed = [float(line.split()[-1]) for line in metrics.splitlines()
                  if line.startswith("tiergate_fleet_sync_failures_total ")]
        assert failed and failed[0] > 0
        assert "tiergate_fleet_degraded 0" in metrics
        # Fleet-wide usage from Redis in /admin/qos: since it came back empty, both users, every replica.
        fleet_usage = fleet.client.get(fleet.urls[1] + "/admin/qos").json()["fleet"]
        assert fleet_usage["sync"]["state"] == "ok" and fleet_usage["sync"]["replicas"] == 3
        assert not fleet_usage["sync"]["config_skew"]
        gold = next(g for g in fleet_usage["groups"] if g["name"] == "Gold")
        assert {u["user_id"] for u in gold["users"] if u["weighted_tokens"] > 0} == {A, B}
        assert len(fleet_usage["replicas"]) == 3
    finally:
        fleet.close()


def test_without_redis_each_replica_is_fair_only_on_its_own(tmp_path):
    fleet = Fleet(tmp_path)  # the negative control: same fleet, same load, no --redis-url
    try:
        sampler = run_pair(fleet, 15)
        shares = sampler.window_shares(A, B, 4, 15)
        report("without Redis", shares)
        assert shares
        for t, share in shares:
            assert share < 0.5 - TOLERANCE, (t, share)  # about 25%: half of one replica of three
        assert fleet.client.get(fleet.urls[0] + "/health").json() == {"status": "ok"}
    finally:
        fleet.close()


def test_an_interactive_conversation_keeps_its_history_across_replicas(tmp_path, redis):
    fleet = Fleet(tmp_path, redis=redis)
    try:
        def turn(text, user="gold_a", interactive=True, session=11):
            body = {"prompt": text, "session_id": session, "interactive_mode": interactive, "request_output_len": 4,
                    "temperature": 0, "user_id": user}
            r = fleet.client.post(fleet.url + "/v1/chat/interactive_qos", json=body)  # round-robin: a new replica each time
            assert r.status_code == 200, r.text
            return json.loads(r.text.splitlines()[-1])
        first = turn("My name is Ada.")
        assert first["history_tokens"] == 0
        second = turn("What is my name?")
        assert second["history_tokens"] == first["input_tokens"] + first["tokens"]
        third = turn("And again?")
        assert third["history_tokens"] == second["input_tokens"] + second["tokens"]
        # Every replica served one of the three turns.
        served = [r.json()["usage"]["users"] for r in (fleet.client.get(u + "/admin/qos") for u in fleet.urls)]
        assert all(any(u["user_id"] == "gold_a" and u["requests"] == 1 for u in users) for users in served), served
        # The session belongs to its user: another user's session 11 is a different one.
        assert turn("Hello.", user="gold_b")["history_tokens"] == 0
        # In Redis, with the idle TTL (1800 s by default).
        ttl = subprocess.run(["redis-cli", "-p", str(redis.port), "TTL", "tiergate:s:6:gold_a:11"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        assert 0 < int(ttl) <= 1800, ttl
        # interactive_mode false ends it fleet-wide: the next turn, on another replica, starts afresh.
        turn("Goodbye.", interactive=False)
        assert turn("Hello again.")["history_tokens"] == 0
    finally:
        fleet.close()


def test_a_password_protected_redis_and_the_per_user_session_cap_in_it(tmp_path):
    """Issue 23: a wrong password stops start-up with an error naming --redis-url (not the password);
    the right one, from TIERGATE_REDIS_PASSWORD, lets the replicas sync; and a user's interactive
    sessions in Redis stay within --max-sessions-per-user whichever replicas opened them."""
    redis = Redis(tmp_path, password="fleet0pw0" + "7" * 23)
    redis.start()
    try:
        wrong = redis.url.replace("redis://", "redis://:not-the-password@")
        run = subprocess.run([str(BINARY), "serve", str(MODEL), "--port", "0", "--insecure-http", "--stand-in-engine", "4",
                              "--state-dir", str(tmp_path / "refused"), "--redis-url", wrong],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 2, run.stdout + run.stderr
        assert f"--redis-url {redis.url}" in run.stderr and "AUTH" in run.stderr, run.stderr
        assert "not-the-password" not in run.stdout + run.stderr
        fleet = Fleet(tmp_path, replicas=2, redis=redis, extra=("--max-sessions-per-user", "2"),
                      env={"TIERGATE_REDIS_PASSWORD": redis.password})
        try:
            wait_until(lambda: all(fleet.client.get(u + "/health").json()["fleet"]["state"] == "ok" for u in fleet.urls),
                       15, "both replicas syncing through the password-protected Redis")
            for session in range(1, 5):  # round-robin: each replica opens some of gold_a's sessions
                body = {"prompt": "hi", "session_id": session, "interactive_mode": True, "request_output_len": 2,
                        "user_id": A}
                r = fleet.client.post(fleet.url + "/v1/chat/interactive_qos", json=body)
                assert r.status_code == 200, r.text
            kept = sorted(redis.cli("--scan", "--pattern", f"tiergate:s:{len(A)}:{A}:*").split())
            assert kept == [f"tiergate:s:{len(A)}:{A}:3", f"tiergate:s:{len(A)}:{A}:4"], kept
        finally:
            fleet.close()
    finally:
        redis.close()


def test_real_model_fleet_wide_shares(tmp_path, redis):
    """The same skew on the default model (each replica one CPU thread, 8 sequences a step)."""
    fleet = Fleet(tmp_path, redis=redis, model=True)
    try:
        seconds, warmup = 42, 15
        sampler = run_pair(fleet, seconds, a_streams=16, b_streams=24, max_tokens=6)
        shares = sampler.window_shares(A, B, warmup, seconds)
        report("real model, with Redis", sampler.window_shares(A, B, 0, seconds))
        assert shares
        for t, share in shares:
            assert abs(share - 0.5) <= TOLERANCE, (t, share)
    finally:
        fleet.close()
