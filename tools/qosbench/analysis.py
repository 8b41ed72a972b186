"""From one run's records, /admin/qos polls and /metrics snapshots to numbers: per group and user
TTFT and inter-token percentiles, tokens/s, weighted-token shares against quota shares over
windows (served tokens as the server charged them, read from /admin/qos), Jain's index, 429/503s,
preemptions, engine step time percentiles, and the isolation floor. Metrics are a flat dict whose
keys the scenario's targets name, e.g. "qos.flood.Platinum.ttft_p99_s"."""
import math
import re

from scenario import quota_pct, resolve_group


def percentile(values, p):
    """Nearest rank (the smallest value with at least p% of the values at or below it); None if empty."""
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v), max(1, math.ceil(p / 100 * len(v)))) - 1]


def jain(xs):
    xs = [x for x in xs if x is not None]
    if not xs or sum(x * x for x in xs) == 0:
        return None
    return sum(xs) ** 2 / (len(xs) * sum(x * x for x in xs))


# --- /metrics ---------------------------------------------------------------------------------
def parse_metrics(text):
    """{(name, labels-string): value} from Prometheus text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if m:
            try:
                out[(m.group(1), m.group(2) or "")] = float(m.group(3))
            except ValueError:
                pass
    return out


def histogram_delta(before, after, name):
    """[(upper bound, cumulative count)] of a histogram between two snapshots, +Inf last."""
    buckets = []
    for (n, labels), v in after.items():
        if n != name + "_bucket":
            continue
        le = re.search(r'le="([^"]+)"', labels).group(1)
        bound = math.inf if le == "+Inf" else float(le)
        buckets.append((bound, v - before.get((n, labels), 0.0)))
    return sorted(buckets)


def histogram_quantile(buckets, q):
    """Like Prometheus' histogram_quantile: linear inside the bucket; None without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


# --- served weighted tokens per user over time, from the polls --------------------------------------
def served_series(polls):
    """{user: [(t, cumulative weighted tokens since the first poll)]}, monotone. An account the
    server dropped while its user was idle restarts from 0 when it comes back: read as a reset."""
    series, cum, last = {}, {}, {}
    previous_t = None
    for i, (t, usage) in enumerate(polls):
        present = {u["user_id"]: u["weighted_tokens"] for u in usage["users"]}
        for uid, w in present.items():
            if uid not in cum:
                # At the first poll: the baseline. Later: a new account, all of it served since.
                cum[uid] = 0.0 if i == 0 else w
                if i > 0:
                    series.setdefault(uid, []).append((previous_t, 0.0))
            elif uid in last:
                cum[uid] += w - last[uid] if w >= last[uid] else w
            else:
                cum[uid] += w  # dropped in between, back with a fresh account
            series.setdefault(uid, []).append((t, cum[uid]))
        last = present
        previous_t = t
    return series


def at(series, t):
    """Cumulative value at time t, linear between polls; clamped at the ends."""
    if not series:
        return 0.0
    if t <= series[0][0]:
        return series[0][1]
    for (t0, v0), (t1, v1) in zip(series, series[1:]):
        if t0 <= t <= t1:
            return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    return series[-1][1]


def backlogged(polls, user, t0, t1):
    """Whether the user had work waiting or running at every poll in [t0, t1] (at least one poll)."""
    seen = False
    for t, usage in polls:
        if t < t0 or t > t1:
            continue
        seen = True
        u = next((x for x in usage["users"] if x["user_id"] == user), None)
        if u is None or u["waiting"] + u["running"] == 0:
            return False
    return seen


def group_totals(polls, field):
    """{group: [(t, value)]}"""
    out = {}
    for t, usage in polls:
        for g in usage["groups"]:
            out.setdefault(g["name"], []).append((t, g[field]))
    return out


# --- the analysis of one (variant, mode) run -----------------------------------------------------
def analyse(run, scenario, mode):
    """run: {"records", "polls", "phases": {name: {"start", "stop", "warmup", "metrics_before",
    "metrics_after", "qos_before", "qos_after"}}, "reloads": [(t, config)], "config", "greedy"}."""
    m = {}
    config = run["config"]
    for name, ph in run["phases"].items():
        w0, w1 = ph["start"] + ph["warmup"], ph["stop"]
        span = max(1e-9, w1 - w0)
        recs = [r for r in run["records"] if r.phase == name]
        in_window = [r for r in recs if w0 <= r.sent <= w1]
        p = f"{mode}.{name}"
        groups = sorted({r.group for r in recs}, key=lambda g: (config.get("user_groups", []) + [g]).index(g))
        total_tokens = 0.0
        for g in groups + ["total"]:
            gr = [r for r in recs if g == "total" or r.group == g]
            gw = [r for r in in_window if g == "total" or r.group == g]
            ttft = [r.first - r.sent for r in gw if r.first is not None]
            itl = [b - a for r in gw for a, b in zip(r.chunks, r.chunks[1:])]
            tokens = 0.0
            for r in gr:
                if r.chunks:
                    per = (r.completion_tokens or len(r.chunks)) / len(r.chunks)
                    tokens += per * sum(1 for t in r.chunks if w0 <= t <= w1)
            key = f"{p}.{g}"
            m[f"{key}.sent"] = len(gr)
            m[f"{key}.completed"] = sum(r.ok for r in gr)
            m[f"{key}.status_429"] = sum(r.status == 429 for r in gr)
            m[f"{key}.status_503"] = sum(r.status == 503 for r in gr)
            m[f"{key}.errors"] = sum(1 for r in gr if not r.ok and r.status not in (429, 503))
            m[f"{key}.ttft_samples"] = len(ttft)
            m[f"{key}.ttft_p50_s"] = percentile(ttft, 50)
            m[f"{key}.ttft_p99_s"] = percentile(ttft, 99)
            m[f"{key}.itl_p50_s"] = percentile(itl, 50)
            m[f"{key}.itl_p99_s"] = percentile(itl, 99)
            m[f"{key}.output_tokens_per_s"] = tokens / span
            if g == "total":
                total_tokens = tokens
        # Lost = accepted (200) but never finished, or a transport error: nothing may be lost.
        m[f"{p}.total.lost"] = sum(1 for r in recs if (r.status == 200 and not r.ok) or r.status is None)
        m[f"{p}.total.output_tokens"] = total_tokens
        before, after = parse_metrics(ph["metrics_before"]), parse_metrics(ph["metrics_after"])
        steps = histogram_delta(before, after, "tiergate_engine_step_seconds")
        m[f"{p}.total.step_p50_s"] = histogram_quantile(steps, 0.5)
        m[f"{p}.total.step_p99_s"] = histogram_quantile(steps, 0.99)
        m[f"{p}.total.steps"] = steps[-1][1] if steps else 0
        step_sum = (after.get(("tiergate_engine_step_seconds_sum", ""), 0) -
                    before.get(("tiergate_engine_step_seconds_sum", ""), 0))
        m[f"{p}.total.step_mean_s"] = step_sum / steps[-1][1] if steps and steps[-1][1] else None
        m[f"{p}.total.preemptions"] = (after.get(("tiergate_preemptions_total", ""), 0) -
                                       before.get(("tiergate_preemptions_total", ""), 0))
        qb = {g["name"]: g for g in ph["qos_before"]["groups"]}
        for g in ph["qos_after"]["groups"]:
            b = qb.get(g["name"], {})
            for f in ("preemptions", "refused_429", "unavailable_503"):
                m[f"{p}.{g['name']}.server_{f}"] = g.get(f, 0) - b.get(f, 0)
        weighted = group_totals([x for x in run["polls"] if w0 <= x[0] <= w1], "weighted_tokens")
        m[f"{p}.total.weighted_tokens_per_s"] = sum(v[-1][1] - v[0][1] for v in weighted.values()) / span if weighted else None

    for name in scenario["analysis"].get("shares", {}).get("phases", []):
        shares(m, run, scenario, mode, name)

    iso = scenario["analysis"].get("isolation")
    if iso:
        g, idle, load = iso["group"], iso["idle_phase"], iso["load_phase"]
        idle_p99 = m.get(f"{mode}.{idle}.{g}.ttft_p99_s")
        load_p99 = m.get(f"{mode}.{load}.{g}.ttft_p99_s")
        step_p99 = m.get(f"{mode}.{load}.total.step_p99_s")
        floor = idle_p99 + step_p99 if idle_p99 is not None and step_p99 is not None else None
        m[f"{mode}.isolation.idle_p50_s"] = m.get(f"{mode}.{idle}.{g}.ttft_p50_s")
        m[f"{mode}.isolation.idle_p99_s"] = idle_p99
        m[f"{mode}.isolation.load_p50_s"] = m.get(f"{mode}.{load}.{g}.ttft_p50_s")
        m[f"{mode}.isolation.load_p99_s"] = load_p99
        m[f"{mode}.isolation.step_p99_s"] = step_p99
        m[f"{mode}.isolation.floor_s"] = floor
        m[f"{mode}.isolation.p99_over_idle_p99"] = load_p99 / idle_p99 if load_p99 and idle_p99 else None
        m[f"{mode}.isolation.p99_over_floor"] = load_p99 / floor if load_p99 and floor else None

    greedy = run.get("greedy")
    if greedy:
        m[f"{mode}.{greedy['phase']}.greedy.checked"] = greedy["checked"]
        m[f"{mode}.{greedy['phase']}.greedy.mismatches"] = greedy["mismatches"]
        m[f"{mode}.{greedy['phase']}.greedy.references"] = greedy["references"]
    return m


def quotas_for(config, users):
    """{user: normalised quota among `users` (one group)}; unknown users split the default entry."""
    pct = {}
    unknown = []
    for u in users:
        g = resolve_group(config, u)
        q, is_unknown = quota_pct(config, g, u)
        if is_unknown:
            unknown.append(u)
        pct[u] = q
    for u in unknown:
        pct[u] /= len(unknown)
    s = sum(pct.values())
    return {u: (q / s if s else 0.0) for u, q in pct.items()}


def config_at(run, t):
    cfg = run["config"]
    for when, c in run.get("reloads", []):
        if when <= t:
            cfg = c
    return cfg


def shares(m, run, scenario, mode, phase):
    """Weighted-token share vs quota share of every continuously backlogged user, over tumbling
    windows after warm-up (after a reload: windows start at the reload; the first one is the
    transition and is reported on its own), and over the whole measured interval."""
    spec = scenario["analysis"]["shares"]
    window = spec.get("window_s", 10)
    ph = run["phases"][phase]
    w0, w1 = ph["start"] + ph["warmup"], ph["stop"]
    polls = [x for x in run["polls"] if ph["start"] <= x[0] <= w1 + 1]
    series = served_series(polls)
    reloads = [t for t, _ in run.get("reloads", []) if w0 < t < w1]
    edges = []  # (begin, end, label)
    segment_starts = [w0] + reloads
    segment_ends = reloads + [w1]
    for i, (a, b) in enumerate(zip(segment_starts, segment_ends)):
        t = a
        k = 0
        while t + window <= b + 1e-6:
            label = "before_reload" if reloads and i == 0 else ("transition" if i > 0 and k == 0 else
                                                               ("after_reload" if i > 0 else "steady"))
            edges.append((t, t + window, label))
            t += window
            k += 1
    p = f"{mode}.{phase}.shares"
    worst = {}
    per_user_worst = {}
    windows = []
    for a, b, label in edges:
        cfg = config_at(run, a + 1e-6)
        by_group = {}
        for user in series:
            g = resolve_group(cfg, user)
            if g is None or not backlogged(polls, user, a, b):
                continue
            by_group.setdefault(g, []).append(user)
        for g, users in by_group.items():
            q = quotas_for(cfg, users)
            users = [u for u in users if q[u] > 0]
            if len(users) < 2:
                continue
            q = quotas_for(cfg, users)
            w = {u: at(series[u], b) - at(series[u], a) for u in users}
            total = sum(w.values())
            if total <= 0:
                continue
            for u in users:
                dev = abs(w[u] / total - q[u]) * 100
                worst[label] = max(worst.get(label, 0.0), dev)
                if label != "transition":
                    per_user_worst[u] = max(per_user_worst.get(u, 0.0), dev)
                windows.append((a, b, label, g, u, w[u] / total, q[u]))
    m[f"{p}.windows"] = len({(a, b) for a, b, *_ in windows})
    m[f"{p}.max_dev_pp"] = max((v for k, v in worst.items() if k != "transition"), default=None)
    for label, v in worst.items():
        m[f"{p}.{label}.max_dev_pp"] = v
    for u, v in per_user_worst.items():
        m[f"{mode}.{phase}.user.{u}.max_dev_pp"] = v
    # The whole measured interval (the config at its end): share, quota, share/quota, Jain.
    cfg = config_at(run, w1)
    start_at = reloads[-1] + window if reloads else w0
    by_group = {}
    for user in series:
        g = resolve_group(cfg, user)
        if g is not None and at(series[user], w1) - at(series[user], start_at) > 0:
            by_group.setdefault(g, []).append(user)
    for g, users in by_group.items():
        q = quotas_for(cfg, users)
        w = {u: at(series[u], w1) - at(series[u], start_at) for u in users}
        total = sum(w.values())
        xs = []
        positive = [u for u in users if q[u] > 0]
        if len(positive) >= 2:
            qp = quotas_for(cfg, positive)
            tp = sum(w[u] for u in positive)
            dev = max(abs(w[u] / tp - qp[u]) * 100 for u in positive) if tp else None
            m[f"{p}.overall_max_dev_pp"] = max(m.get(f"{p}.overall_max_dev_pp") or 0.0, dev or 0.0)
        for u in users:
            share = w[u] / total if total else 0.0
            m[f"{mode}.{phase}.user.{u}.share"] = share
            m[f"{mode}.{phase}.user.{u}.quota"] = q[u]
            m[f"{mode}.{phase}.user.{u}.share_over_quota"] = share / q[u] if q[u] else None
            if q[u] > 0:
                xs.append(w[u] / q[u])
        m[f"{p}.{g}.jain"] = jain(xs)
    run.setdefault("share_windows", {})[phase] = windows
