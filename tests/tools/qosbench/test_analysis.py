"""tools/qosbench on made-up data: percentiles, histogram quantiles, served-token series across
account resets, share windows against quotas (before and after a reload), targets, and the
scenario validator's errors. No server: milliseconds."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tools/qosbench"))

import analysis  # noqa: E402
import report  # noqa: E402
import scenario  # noqa: E402
from load import Record  # noqa: E402

CONFIG = json.loads((ROOT / "config/qos_config.json").read_text())


def test_percentile_is_nearest_rank():
    assert analysis.percentile([], 50) is None
    assert analysis.percentile([3, 1, 2], 50) == 2
    assert analysis.percentile(list(range(1, 101)), 99) == 99
    assert analysis.percentile(list(range(1, 101)), 100) == 100


def test_histogram_quantile_interpolates_inside_the_bucket():
    before = analysis.parse_metrics('s_bucket{le="0.1"} 0\ns_bucket{le="0.2"} 0\ns_bucket{le="+Inf"} 0\n')
    after = analysis.parse_metrics('s_bucket{le="0.1"} 50\ns_bucket{le="0.2"} 100\ns_bucket{le="+Inf"} 100\n')
    b = analysis.histogram_delta(before, after, "s")
    assert analysis.histogram_quantile(b, 0.5) == pytest.approx(0.1)
    assert analysis.histogram_quantile(b, 0.75) == pytest.approx(0.15)
    assert analysis.histogram_quantile(analysis.histogram_delta(after, after, "s"), 0.5) is None


def usage(users, groups=()):
    return {"users": [{"user_id": u, "group": g, "weighted_tokens": w, "waiting": 1, "running": 1}
                      for u, g, w in users],
            "groups": [{"name": g, "waiting": 0, "running": 0, "weighted_tokens": w} for g, w in groups]}


def test_served_series_counts_service_across_an_account_reset():
    polls = [(0, usage([("a", "G", 100)])), (1, usage([("a", "G", 150)])), (2, usage([])),
             (3, usage([("a", "G", 30)])), (4, usage([("b", "G", 20), ("a", "G", 40)]))]
    s = analysis.served_series(polls)
    assert [v for _, v in s["a"]] == [0, 50, 80, 90]  # baseline 100 at the first poll; 30 after the reset
    assert s["b"] == [(3, 0.0), (4, 20)]               # a new account: all of it served since
    assert analysis.at(s["a"], 0.5) == pytest.approx(25)


def run_with(polls, reloads=(), stop=40, warmup=0):
    return {"config": CONFIG, "polls": polls, "records": [], "reloads": list(reloads),
            "phases": {"main": {"start": 0, "stop": stop, "warmup": warmup, "metrics_before": "", "metrics_after": "",
                                "qos_before": {"groups": []}, "qos_after": {"groups": []}}}}


def spec(window=10):
    return {"analysis": {"shares": {"phases": ["main"], "window_s": window}}}


def test_share_windows_measure_the_deviation_from_quota():
    # user_id1 gets 3 units for user_id2's 1 every second: 75/25 against quotas 50/50.
    polls = [(t, usage([("user_id1", "Gold", 3 * t), ("user_id2", "Gold", t)])) for t in range(0, 41)]
    run = run_with(polls)
    m = {}
    analysis.shares(m, run, spec(), "qos", "main")
    assert m["qos.main.shares.windows"] == 4
    assert m["qos.main.shares.max_dev_pp"] == pytest.approx(25)
    assert m["qos.main.user.user_id1.share"] == pytest.approx(0.75)
    assert m["qos.main.user.user_id1.share_over_quota"] == pytest.approx(1.5)
    assert m["qos.main.shares.Gold.jain"] == pytest.approx(0.8)


def test_a_user_that_is_not_backlogged_is_left_out_of_the_window():
    polls = []
    for t in range(0, 21):
        u = usage([("user_id1", "Gold", 3 * t), ("user_id2", "Gold", t)])
        if t == 5:
            u["users"][1]["waiting"] = u["users"][1]["running"] = 0  # idle for a moment
        polls.append((t, u))
    m = {}
    analysis.shares(m, run_with(polls, stop=20), spec(), "qos", "main")
    assert m["qos.main.shares.windows"] == 1  # only [10, 20) had both backlogged throughout


def test_after_a_reload_windows_restart_and_the_new_quotas_apply():
    new = scenario.merge(CONFIG, {"user_group_map": {"Gold": [{"id": "user_id1", "quota_pct": 75},
                                                              {"id": "user_id2", "quota_pct": 25}]}})
    polls = [(t, usage([("user_id1", "Gold", 3 * t), ("user_id2", "Gold", t)])) for t in range(0, 41)]
    m = {}
    analysis.shares(m, run_with(polls, reloads=[(20, new)]), spec(), "qos", "main")
    assert m["qos.main.shares.before_reload.max_dev_pp"] == pytest.approx(25)
    assert m["qos.main.shares.after_reload.max_dev_pp"] == pytest.approx(0, abs=1e-9)
    assert "qos.main.shares.transition.max_dev_pp" in m


def test_unknown_users_split_the_default_share():
    q = analysis.quotas_for(CONFIG, ["user_id3", "cust_a", "cust_b"])
    assert q["user_id3"] == pytest.approx(0.05)
    assert q["cust_a"] == pytest.approx(0.475)


def record(phase, group, sent, first, chunks, status=200, finish="length", tokens=None):
    r = Record(1, phase, "c", "u", group, "chat_qos", 0, 8, 0)
    r.sent, r.first, r.chunks, r.status, r.finish = sent, first, chunks, status, finish
    r.completion_tokens = tokens if tokens is not None else len(chunks)
    r.done = chunks[-1] if chunks else sent
    return r


def test_analyse_counts_lost_requests_and_reads_ttft():
    run = run_with([], stop=10)
    run["records"] = [record("main", "Gold", 1, 1.5, [1.5, 1.6, 1.7]),
                      record("main", "Gold", 2, 2.2, [2.2], finish=""),       # cut: accepted, never finished
                      record("main", "Gold", 3, None, [], status=429, finish="")]
    m = analysis.analyse(run, {"analysis": {}}, "qos")
    assert m["qos.main.Gold.ttft_p50_s"] == pytest.approx(0.2)
    assert m["qos.main.Gold.ttft_p99_s"] == pytest.approx(0.5)
    assert m["qos.main.total.lost"] == 1
    assert m["qos.main.Gold.status_429"] == 1
    assert m["qos.main.Gold.completed"] == 1


def test_targets_fail_when_missed_or_not_measured():
    m = {"a": 1.0, "b": 5.0}
    verdicts = report.evaluate_targets(m, [{"metric": "a", "max": 2}, {"metric": "b", "max": 2},
                                           {"metric": "missing", "min": 0},
                                           {"any_of": [{"metric": "b", "max": 2}, {"metric": "a", "min": 1}]}])
    assert [ok for ok, _ in verdicts] == [True, False, False, True]


def test_the_scenario_validator_names_the_path_of_the_problem(tmp_path):
    bad = tmp_path / "s.json"
    bad.write_text(json.dumps({"name": "x", "phases": [{"name": "p", "duration_s": 5, "clients": [
        {"name": "c", "user": "u", "concurency": 3}]}]}))
    with pytest.raises(scenario.ScenarioError, match=r"phases\[0\]\.clients\[0\].*concurency"):
        scenario.load(bad)
    bad.write_text(json.dumps({"name": "x", "phases": [{"name": "p", "duration_s": 5, "clients": [
        {"name": "c", "user": "u", "concurrency": "lots"}]}]}))
    with pytest.raises(scenario.ScenarioError, match=r"concurrency"):
        scenario.load(bad)


def test_shipped_scenarios_load_in_both_versions():
    for path in sorted((ROOT / "tools/workloads").glob("qosbench_*.json")):
        for check in (False, True):
            s = scenario.load(path, check=check)
            assert s["targets"], path
            assert all(p["duration_s"] <= (40 if check else 600) for p in s["phases"]), path
