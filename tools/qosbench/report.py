"""The side-by-side text report (QoS vs FCFS, one column block per mode), the machine header,
target verdicts, and the CSV files of a run."""
import csv
import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODE_TITLE = {"qos": "QoS", "fcfs": "FCFS"}


def machine():
    """CPU model, cores, the ISA levels that matter to the CPU kernels, load average."""
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("unknown", "", "x86_64"):
                model = line.split(":", 1)[1].strip()
            if line.startswith(("flags", "Features")) and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [f for f in ("avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile", "avx2", "fma", "avx_vnni",
                       "asimd", "sve") if f in flags]
    best = ("AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "NEON" if "asimd" in flags
            else "baseline")
    load = os.getloadavg()
    return (f"machine: {model}, {os.cpu_count()} cores, ISA {best} ({' '.join(isa) or 'none of note'}), "
            f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")


def git_revision():
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def fmt(v, kind="num"):
    if v is None:
        return "-"
    if kind == "s":
        return f"{v * 1000:.0f}ms" if v < 1 else f"{v:.2f}s"
    if kind == "pct":
        return f"{100 * v:.1f}%"
    if kind == "pp":
        return f"{v:.1f}pp"
    if kind == "x":
        return f"{v:.2f}x"
    if kind == "int":
        return f"{v:.0f}"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def table(rows, header):
    """Aligned text: first column left, the rest right."""
    rows = [header] + rows
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    out = []
    for j, r in enumerate(rows):
        cells = [str(c).ljust(widths[0]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(r)]
        out.append("  ".join(cells).rstrip())
        if j == 0:
            out.append("-" * len(out[0]))
    return "\n".join(out)


def phase_table(m, modes, phase, groups, server_groups):
    """One row per group and mode (QoS and FCFS adjacent), then engine and server-side totals."""
    cols = [("sent", "sent", "int"), ("done", "completed", "int"), ("429", "status_429", "int"),
            ("503", "status_503", "int"), ("err", "errors", "int"), ("TTFT p50", "ttft_p50_s", "s"),
            ("TTFT p99", "ttft_p99_s", "s"), ("ITL p50", "itl_p50_s", "s"), ("ITL p99", "itl_p99_s", "s"),
            ("tok/s", "output_tokens_per_s", "num")]
    rows = []
    for g in groups + ["total"]:
        for mode in modes:
            if m.get(f"{mode}.{phase}.{g}.sent") is None:
                continue
            rows.append([f"{g} {MODE_TITLE[mode]}"] + [fmt(m.get(f"{mode}.{phase}.{g}.{c[1]}"), c[2]) for c in cols])
    extra = [("engine step p50", "total.step_p50_s", "s"), ("engine step p99", "total.step_p99_s", "s"),
             ("preemptions", "total.preemptions", "int"), ("lost (accepted, not finished)", "total.lost", "int"),
             ("weighted tokens/s (server)", "total.weighted_tokens_per_s", "num")]
    erows = [[label] + [fmt(m.get(f"{mode}.{phase}.{k}"), kind) for mode in modes] for label, k, kind in extra]
    for g in server_groups:  # the server's own groups: the config's under QoS, one "fcfs" queue without
        erows.append([f"{g}: preempted / 429 / 503 (server)"] +
                     ["/".join(fmt(m.get(f"{mode}.{phase}.{g}.server_{f}"), "int")
                               for f in ("preemptions", "refused_429", "unavailable_503")) for mode in modes])
    return "\n".join([table(rows, ["group, mode"] + [c[0] for c in cols]), "",
                      table(erows, [""] + [MODE_TITLE[x] for x in modes])])


def isolation_table(m, modes, iso, load_phase):
    rows = [[f"{iso['group']} TTFT p50, idle", "isolation.idle_p50_s", "s"],
            [f"{iso['group']} TTFT p99, idle", "isolation.idle_p99_s", "s"],
            [f"{iso['group']} TTFT p50, under load", "isolation.load_p50_s", "s"],
            [f"{iso['group']} TTFT p99, under load", "isolation.load_p99_s", "s"],
            ["engine step p99 under load", "isolation.step_p99_s", "s"],
            ["floor = idle p99 + step p99", "isolation.floor_s", "s"],
            ["p99 under load / idle p99", "isolation.p99_over_idle_p99", "x"],
            ["p99 under load / floor", "isolation.p99_over_floor", "x"],
            ["throughput under load, tok/s", f"{load_phase}.total.output_tokens_per_s", "num"]]
    out = [[label] + [fmt(m.get(f"{mode}.{k}"), kind) for mode in modes] for label, k, kind in rows]
    if "qos" in modes and "fcfs" in modes:
        r = m.get(f"ratio.{load_phase}.throughput_qos_over_fcfs")
        out.append(["throughput QoS / FCFS", fmt(r, "x"), ""])
    return table(out, [""] + [MODE_TITLE[x] for x in modes])


def shares_table(m, modes, phase, users, window_s):
    header = ["user", "group", "quota"]
    for mode in modes:
        header += [f"{MODE_TITLE[mode]} share", "share/quota", f"max {window_s:g}s dev"]
    rows = []
    for user, group in users:
        q = next((m.get(f"{mode}.{phase}.user.{user}.quota") for mode in modes
                  if m.get(f"{mode}.{phase}.user.{user}.quota") is not None), None)
        row = [user, group, fmt(q, "pct")]
        for mode in modes:
            row += [fmt(m.get(f"{mode}.{phase}.user.{user}.share"), "pct"),
                    fmt(m.get(f"{mode}.{phase}.user.{user}.share_over_quota"), "x"),
                    fmt(m.get(f"{mode}.{phase}.user.{user}.max_dev_pp"), "pp")]
        rows.append(row)
    lines = [table(rows, header), ""]
    summary = [[f"windows ({window_s:g} s, after warm-up)", "windows", "int"], ["largest deviation, any window", "max_dev_pp", "pp"],
               ["  before the reload", "before_reload.max_dev_pp", "pp"],
               ["  transition window (starts at the reload)", "transition.max_dev_pp", "pp"],
               ["  after the transition window", "after_reload.max_dev_pp", "pp"]]
    srows = []
    for label, k, kind in summary:
        vals = [m.get(f"{mode}.{phase}.shares.{k}") for mode in modes]
        if any(v is not None for v in vals):
            srows.append([label] + [fmt(v, kind) for v in vals])
    groups = sorted({g for _, g in users})
    for g in groups:
        vals = [m.get(f"{mode}.{phase}.shares.{g}.jain") for mode in modes]
        if any(v is not None for v in vals):
            srows.append([f"Jain's index, {g} (quota-normalised)"] + [fmt(v) for v in vals])
    lines.append(table(srows, [""] + [MODE_TITLE[x] for x in modes]))
    return "\n".join(lines)


def _verdict(m, t):
    """(ok, description) of one target; a missing metric fails (the scenario did not measure it)."""
    if "any_of" in t:
        parts = [_verdict(m, sub) for sub in t["any_of"]]
        return any(ok for ok, _ in parts), " or ".join(f"[{d}: {'met' if ok else 'missed'}]" for ok, d in parts)
    v = m.get(t["metric"])
    ok = v is not None
    bounds = []
    if "max" in t:
        bounds.append(f"<= {t['max']}")
        ok = ok and v <= t["max"]
    if "min" in t:
        bounds.append(f">= {t['min']}")
        ok = ok and v >= t["min"]
    value = "not measured" if v is None else f"{v:.4g}"
    return ok, f"{t['metric']} = {value} {' and '.join(bounds)}"


def evaluate_targets(m, targets):
    """[(ok, line)] per target."""
    out = []
    for t in targets:
        ok, text = _verdict(m, t)
        why = f"  ({t['why']})" if t.get("why") else ""
        out.append((ok, f"  {'PASS' if ok else 'FAIL'} {text}{why}"))
    return out


def write_requests_csv(path, records):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["rid", "phase", "client", "user", "group", "route", "status", "error", "finish", "sent_s",
                    "first_token_s", "finish_s", "ttft_s", "prompt_tokens", "completion_tokens", "max_tokens",
                    "prompt_index", "token_times_s"])
        for r in records:
            w.writerow([r.rid, r.phase, r.client, r.user, r.group, r.route, r.status, r.error, r.finish,
                        f"{r.sent:.4f}", "" if r.first is None else f"{r.first:.4f}",
                        "" if r.done is None else f"{r.done:.4f}",
                        "" if r.first is None else f"{r.first - r.sent:.4f}", r.prompt_tokens, r.completion_tokens,
                        r.max_tokens, r.prompt_index, ";".join(f"{t:.4f}" for t in r.chunks)])


def write_polls_csv(path, polls):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "kind", "name", "group", "waiting", "running", "weighted_tokens", "preemptions",
                    "refused_429", "unavailable_503"])
        for t, usage in polls:
            for g in usage["groups"]:
                w.writerow([f"{t:.3f}", "group", g["name"], g["name"], g["waiting"], g["running"],
                            g["weighted_tokens"], g.get("preemptions", ""), g.get("refused_429", ""),
                            g.get("unavailable_503", "")])
            for u in usage["users"]:
                w.writerow([f"{t:.3f}", "user", u["user_id"], u["group"], u["waiting"], u["running"],
                            u["weighted_tokens"], "", "", ""])
