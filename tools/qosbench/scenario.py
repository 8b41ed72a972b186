"""A qosbench scenario file (JSON): the server's shape, the QoS config (and its variants), the phases
of load with their clients and mid-run actions, what to analyse and the targets --check turns into
an exit code. `load()` validates it and names the JSON path of the first problem.

    {"name": "...", "description": "...",
     "server": {"max_num_seqs": 32, "max_num_batched_tokens": 512, "kv_cache_blocks": 2048, "threads": 0},
     "qos_config": "config/qos_config.json" | {...},  "qos_config_patch": {...},
     "variants": [{"name": "quota 70/30", "qos_config_patch": {...}}],
     "phases": [{"name": "flood", "duration_s": 60, "warmup_s": 10, "drain_timeout_s": 120,
                 "clients": [CLIENT, ...], "actions": [{"at_s": 30, "reload_patch": {...}}]}],
     "analysis": {"isolation": {...}, "shares": {...}, "greedy_reference": {...}, "lmdeploy_sim": {...}},
     "targets": [{"metric": "qos.flood.Platinum.ttft_p99_s", "max": 1.0, "why": "..."}],
     "check": {<the same keys, merged over the above for --check>}}

CLIENT: {"name", "users": [...] | "user": id | "unknown_users": {"prefix": "cust_", "count": 49},
         "route": "chat_qos" | "chat", "concurrency": N | "3x" (closed loop, x = server max_num_seqs)
         | "rate_per_s": R (open loop, Poisson) | "burst": {"every_s": 5, "size": N | "0.5x"},
         "start_s", "stop_s", "prompt_tokens": N | [lo, hi], "max_tokens": N | [lo, hi],
         "temperature": 0, "prompt_set": K (K distinct prompts, reused), "max_requests": N, "seed": S}
A patch merges into the config recursively (objects merge, anything else replaces)."""
import copy
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class ScenarioError(Exception):
    pass


def merge(base, patch):
    """`patch` merged into a copy of `base`: objects merge key by key, anything else replaces."""
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(base)
    for k, v in patch.items():
        out[k] = merge(out[k], v) if k in out else copy.deepcopy(v)
    return out


TOP_KEYS = {"name", "description", "server", "qos_config", "qos_config_patch", "variants", "phases",
            "analysis", "targets", "check", "notes"}
SERVER_KEYS = {"max_num_seqs", "max_num_batched_tokens", "kv_cache_blocks", "threads"}
PHASE_KEYS = {"name", "duration_s", "warmup_s", "drain_timeout_s", "clients", "actions", "idle_before"}
CLIENT_KEYS = {"name", "users", "user", "unknown_users", "route", "concurrency", "rate_per_s", "burst",
               "start_s", "stop_s", "prompt_tokens", "max_tokens", "temperature", "prompt_set",
               "max_requests", "seed", "per_user_concurrency"}
ANALYSIS_KEYS = {"isolation", "shares", "greedy_reference", "lmdeploy_sim"}
TARGET_KEYS = {"metric", "max", "min", "why", "variants", "any_of"}


def _need(cond, where, message):
    if not cond:
        raise ScenarioError(f"{where}: {message}")


def _number(value, where, minimum=0.0):
    _need(isinstance(value, (int, float)) and not isinstance(value, bool) and value >= minimum, where,
          f"must be a number >= {minimum}, got {json.dumps(value)}")
    return float(value)


def _range(value, where):
    if isinstance(value, list):
        _need(len(value) == 2 and all(isinstance(v, int) and v >= 1 for v in value) and value[0] <= value[1],
              where, "must be [lo, hi] with 1 <= lo <= hi")
        return value
    _need(isinstance(value, int) and value >= 1, where, "must be a positive integer or [lo, hi]")
    return [value, value]


def _count(value, where, capacity):
    """An integer, or "Nx": N times the server's max_num_seqs."""
    if isinstance(value, str) and value.endswith("x"):
        try:
            factor = float(value[:-1])
        except ValueError:
            raise ScenarioError(f"{where}: \"{value}\" is not a multiple like \"3x\"") from None
        return max(1, round(factor * capacity))
    _need(isinstance(value, int) and value >= 1, where, "must be a positive integer or a multiple like \"3x\"")
    return value


def _unknown(d, allowed, where):
    extra = sorted(set(d) - allowed)
    _need(not extra, where, f"unknown key(s) {extra}; allowed: {sorted(allowed)}")


def load_qos_config(value, where):
    if isinstance(value, str):
        path = (ROOT / value) if not Path(value).is_absolute() else Path(value)
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ScenarioError(f"{where}: cannot read {path}: {e}") from None
    _need(isinstance(value, dict), where, "must be a path or a QoS config object")
    return copy.deepcopy(value)


def load(path, check=False):
    """The scenario at `path` as a dict, validated; with check, its "check" block merged over it."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ScenarioError(f"{path}: {e}") from None
    _need(isinstance(raw, dict), str(path), "must be a JSON object")
    _unknown(raw, TOP_KEYS, str(path))
    s = merge(raw, raw.get("check", {})) if check else copy.deepcopy(raw)
    s.pop("check", None)
    s["path"] = str(path)
    s["check_mode"] = check
    where = f"{path}"
    _need(isinstance(s.get("name"), str) and s["name"], where + ".name", "must be a non-empty string")

    server = s.setdefault("server", {})
    _unknown(server, SERVER_KEYS, where + ".server")
    server.setdefault("max_num_seqs", 64)
    server.setdefault("max_num_batched_tokens", 512)
    server.setdefault("kv_cache_blocks", 2048)
    server.setdefault("threads", 0)
    for k in SERVER_KEYS:
        _need(isinstance(server[k], int) and server[k] >= 0, f"{where}.server.{k}", "must be an integer >= 0")
    capacity = server["max_num_seqs"]

    base = load_qos_config(s.get("qos_config", "config/qos_config.json"), where + ".qos_config")
    base = merge(base, s.get("qos_config_patch", {}))
    variants = s.get("variants") or [{"name": "default"}]
    _need(isinstance(variants, list), where + ".variants", "must be a list")
    s["variants"] = []
    for i, v in enumerate(variants):
        _need(isinstance(v, dict) and isinstance(v.get("name"), str), f"{where}.variants[{i}]",
              "needs a name")
        s["variants"].append({"name": v["name"], "qos_config": merge(base, v.get("qos_config_patch", {}))})

    phases = s.get("phases")
    _need(isinstance(phases, list) and phases, where + ".phases", "must be a non-empty list")
    names = set()
    for i, p in enumerate(phases):
        pw = f"{where}.phases[{i}]"
        _need(isinstance(p, dict), pw, "must be an object")
        _unknown(p, PHASE_KEYS, pw)
        _need(isinstance(p.get("name"), str) and p["name"] not in names, pw + ".name", "must be a unique string")
        names.add(p["name"])
        p["duration_s"] = _number(p.get("duration_s"), pw + ".duration_s", 0.1)
        p["warmup_s"] = _number(p.get("warmup_s", 0), pw + ".warmup_s")
        _need(p["warmup_s"] < p["duration_s"], pw + ".warmup_s", "must be shorter than duration_s")
        p["drain_timeout_s"] = _number(p.get("drain_timeout_s", 120), pw + ".drain_timeout_s")
        p.setdefault("idle_before", True)
        clients = p.get("clients")
        _need(isinstance(clients, list) and clients, pw + ".clients", "must be a non-empty list")
        for j, c in enumerate(clients):
            _client(c, f"{pw}.clients[{j}]", capacity)
        actions = p.setdefault("actions", [])
        for j, a in enumerate(actions):
            aw = f"{pw}.actions[{j}]"
            _need(isinstance(a, dict) and set(a) <= {"at_s", "reload_patch"} and "reload_patch" in a, aw,
                  "must be {\"at_s\": seconds, \"reload_patch\": {...}}")
            a["at_s"] = _number(a.get("at_s"), aw + ".at_s")
            _need(a["at_s"] < p["duration_s"], aw + ".at_s", "must fall inside the phase")

    analysis = s.setdefault("analysis", {})
    _unknown(analysis, ANALYSIS_KEYS, where + ".analysis")
    for key, need in (("isolation", ("group", "idle_phase", "load_phase")), ("shares", ("phases",)),
                      ("greedy_reference", ("phase", "group"))):
        if key in analysis:
            for n in need:
                _need(n in analysis[key], f"{where}.analysis.{key}", f"needs \"{n}\"")
    for phase_name in analysis.get("shares", {}).get("phases", []):
        _need(phase_name in names, where + ".analysis.shares.phases", f"no phase named {phase_name!r}")
    if "greedy_reference" in analysis:
        gr = analysis["greedy_reference"]
        phase = next((p for p in phases if p["name"] == gr["phase"]), None)
        _need(phase is not None, where + ".analysis.greedy_reference.phase", f"no phase named {gr['phase']!r}")
        for c in phase["clients"]:
            if all(resolve_group(s["variants"][0]["qos_config"], u) != gr["group"] for u in c["users"]):
                continue
            _need("prompt_set" in c and c["temperature"] == 0, f"{where}.analysis.greedy_reference",
                  f"client {c['name']!r} needs a prompt_set and temperature 0 for its requests to be replayed")
    targets = s.setdefault("targets", [])
    for i, t in enumerate(targets):
        _target(t, f"{where}.targets[{i}]")
    return s


def _target(t, where):
    _need(isinstance(t, dict), where, "must be an object")
    _unknown(t, TARGET_KEYS, where)
    if "any_of" in t:
        _need(isinstance(t["any_of"], list) and t["any_of"], where + ".any_of", "must be a non-empty list")
        for j, sub in enumerate(t["any_of"]):
            _target(sub, f"{where}.any_of[{j}]")
        return
    _need(isinstance(t.get("metric"), str) and ("max" in t or "min" in t), where,
          "needs \"metric\" and \"max\" or \"min\" (or \"any_of\": [targets])")


def _client(c, where, capacity):
    _need(isinstance(c, dict), where, "must be an object")
    _unknown(c, CLIENT_KEYS, where)
    _need(isinstance(c.get("name"), str), where + ".name", "must be a string")
    if "user" in c:
        c["users"] = [c.pop("user")]
    if "unknown_users" in c:
        u = c.pop("unknown_users")
        _need(isinstance(u, dict) and isinstance(u.get("count"), int) and u["count"] >= 1,
              where + ".unknown_users", "must be {\"prefix\": ..., \"count\": N}")
        start = u.get("start", 0)
        c["users"] = [f"{u.get('prefix', 'user_')}{i:03d}" for i in range(start, start + u["count"])]
    _need(isinstance(c.get("users"), list) and c["users"] and all(isinstance(x, str) and x for x in c["users"]),
          where + ".users", "needs \"user\", \"users\" or \"unknown_users\"")
    c.setdefault("route", "chat_qos")
    _need(c["route"] in ("chat_qos", "chat"), where + ".route", "must be \"chat_qos\" or \"chat\"")
    modes = [k for k in ("concurrency", "per_user_concurrency", "rate_per_s", "burst") if k in c]
    _need(len(modes) == 1, where, "needs exactly one of concurrency, per_user_concurrency, rate_per_s, burst")
    if "concurrency" in c:
        c["concurrency"] = _count(c["concurrency"], where + ".concurrency", capacity)
    if "per_user_concurrency" in c:
        c["concurrency"] = _count(c.pop("per_user_concurrency"), where + ".per_user_concurrency",
                                  capacity) * len(c["users"])
    if "rate_per_s" in c:
        c["rate_per_s"] = _number(c["rate_per_s"], where + ".rate_per_s", 0.001)
    if "burst" in c:
        b = c["burst"]
        _need(isinstance(b, dict) and "every_s" in b and "size" in b, where + ".burst",
              "must be {\"every_s\": s, \"size\": N | \"0.5x\"}")
        b["every_s"] = _number(b["every_s"], where + ".burst.every_s", 0.1)
        b["size"] = _count(b["size"], where + ".burst.size", capacity)
    c["start_s"] = _number(c.get("start_s", 0), where + ".start_s")
    if "stop_s" in c:
        c["stop_s"] = _number(c["stop_s"], where + ".stop_s")
    c["prompt_tokens"] = _range(c.get("prompt_tokens", 64), where + ".prompt_tokens")
    c["max_tokens"] = _range(c.get("max_tokens", 32), where + ".max_tokens")
    c["temperature"] = _number(c.get("temperature", 0), where + ".temperature")
    if "prompt_set" in c:
        _need(isinstance(c["prompt_set"], int) and c["prompt_set"] >= 1, where + ".prompt_set",
              "must be a positive integer")
    c["max_requests"] = _count(c.get("max_requests", 100000), where + ".max_requests", capacity)
    c.setdefault("seed", sum(map(ord, c["name"])))  # deterministic per client name


def fcfs_config(qos_config):
    """The same config with QoS switched off: the server then runs one FCFS queue."""
    out = copy.deepcopy(qos_config)
    out["enable_user_qos"] = False
    return out


def resolve_group(qos_config, user):
    """The group a user id lands in under `qos_config` (DESIGN.md §3), or None (refused)."""
    groups = qos_config.get("user_groups", [])
    gmap = qos_config.get("user_group_map", {})
    for g in groups:
        if any(e.get("id") == user for e in gmap.get(g, [])):
            return g
    if qos_config.get("default_group"):
        return qos_config["default_group"]
    for g in reversed(groups):
        if any(e.get("id") == "default" and e.get("quota_pct", 0) > 0 for e in gmap.get(g, [])):
            return g
    return None


def quota_pct(qos_config, group, user):
    """(quota_pct, unknown): the user's own entry, or the group's default entry for unknown users."""
    entries = qos_config.get("user_group_map", {}).get(group, [])
    for e in entries:
        if e.get("id") == user:
            return float(e.get("quota_pct", 0)), False
    for e in entries:
        if e.get("id") == "default":
            return float(e.get("quota_pct", 0)), True
    return 0.0, True
