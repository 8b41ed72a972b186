#!/usr/bin/env python3
"""qosbench: QoS on the real server, side by side with FCFS, from a scenario file.

    .venv/bin/python tools/qosbench/qosbench.py tools/workloads/qosbench_bronze_flood.json
    .venv/bin/python tools/qosbench/qosbench.py SCENARIO --check        # the short version; exit 1 on a missed target

For every variant of the scenario the same load runs twice, back to back, each time on a fresh
server started here on 127.0.0.1 (same binary, same flags): once with the scenario's QoS config,
once with the same config and "enable_user_qos": false (FCFS). Variants alternate which mode goes
first, so drift on a shared machine does not favour one. Writes, under --out: a per-request CSV
and a poll CSV per run, the report (report.txt, also printed), metrics.json, and PNGs (share vs
quota over time per user, TTFT CDF per group, queue depth per group). With --url the load goes to
an already running server instead (loopback only; one mode: whatever it runs)."""
import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import analysis  # noqa: E402
import report  # noqa: E402
import scenario as scen  # noqa: E402
import server as srv  # noqa: E402
from load import Runner  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", help="a scenario file (tools/workloads/qosbench_*.json)")
    p.add_argument("--check", action="store_true", help="run the scenario's short version; exit 1 if a target is missed")
    p.add_argument("--out", help="result folder (default build/qosbench/<scenario>[-check])")
    p.add_argument("--binary", default=str(srv.DEFAULT_BINARY))
    p.add_argument("--model", default=str(srv.DEFAULT_MODEL))
    p.add_argument("--qos-sim", default=str(ROOT / "build/release/tools/qos_sim/qos-sim"),
                   help="the qos-sim binary for the LMDeploy comparison")
    p.add_argument("--modes", default="qos,fcfs", help="qos,fcfs (default), or one of them")
    p.add_argument("--threads", type=int, help="engine threads (overrides the scenario's server.threads)")
    p.add_argument("--duration-scale", type=float, default=1.0, help="multiply every phase's duration and warm-up")
    p.add_argument("--rounds", type=int, default=1,
                   help="repeat the QoS/FCFS pair N times, alternating which goes first; report medians")
    p.add_argument("--max-run-s", type=float, default=3600, help="refuse a scenario whose phases alone exceed this")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--url", help="an already running server (loopback); needs --keys")
    p.add_argument("--keys", help="JSON {\"admin\": KEY, \"any_user\": KEY, \"users\": {USER: KEY}} for --url")
    p.add_argument("--cacert", help="the running server's certificate (default: not verified)")
    p.add_argument("--qos-config-path", help="the running server's QoS config file (for reload actions)")
    return p.parse_args(argv)


def scale(s, factor):
    if factor == 1.0:
        return
    for ph in s["phases"]:
        for k in ("duration_s", "warmup_s"):
            ph[k] *= factor
        for a in ph["actions"]:
            a["at_s"] *= factor
        for c in ph["clients"]:
            c["start_s"] *= factor
            if "stop_s" in c:
                c["stop_s"] *= factor


def plain_route_users(s):
    return {u for ph in s["phases"] for c in ph["clients"] if c["route"] == "chat" for u in c["users"]}


async def drive(server, s, qos_config, mode, log):
    """Runs every phase against one server; returns the run's data for analysis."""
    run = {"config": qos_config, "phases": {}, "reloads": [], "mode": mode}
    current = {"config": qos_config}

    def on_action(action, t):
        new = scen.merge(current["config"], action["reload_patch"])
        server.reload(new if mode == "qos" else scen.fcfs_config(new))
        current["config"] = new
        run["reloads"].append((t, new))
        log(f"    reload at {t:.1f}s: {json.dumps(action['reload_patch'])}")

    greedy_spec = s["analysis"].get("greedy_reference")
    keep_text = bool(greedy_spec)
    loop = asyncio.get_running_loop()
    async with Runner(server, lambda u: scen.resolve_group(qos_config, u) or "refused", keep_text) as runner:
        poller = asyncio.ensure_future(runner.poll())
        try:
            for ph in s["phases"]:
                if ph["idle_before"] and not await loop.run_in_executor(None, server.wait_idle, ph["drain_timeout_s"]):
                    log(f"    the server was still busy {ph['drain_timeout_s']:.0f}s after the previous phase")
                before = await loop.run_in_executor(None, server.metrics)
                qos_before = (await loop.run_in_executor(None, server.admin_qos))["usage"]
                log(f"  phase {ph['name']}: {ph['duration_s']:.0f}s" + (f", warm-up {ph['warmup_s']:.0f}s" if ph["warmup_s"] else ""))
                start, stop = await runner.run_phase(ph, on_action)
                await asyncio.sleep(0.6)  # one more poll after the last response
                after = await loop.run_in_executor(None, server.metrics)
                qos_after = (await loop.run_in_executor(None, server.admin_qos))["usage"]
                run["phases"][ph["name"]] = {"start": start, "stop": stop, "warmup": ph["warmup_s"],
                                             "metrics_before": before, "metrics_after": after,
                                             "qos_before": qos_before, "qos_after": qos_after}
                recs = [r for r in runner.records if r.phase == ph["name"]]
                log(f"    {len(recs)} requests, {sum(r.ok for r in recs)} completed, "
                    f"{sum(r.status == 429 for r in recs)} x 429, {sum(r.status == 503 for r in recs)} x 503, "
                    f"{sum(1 for r in recs if (r.status == 200 and not r.ok) or r.status is None)} lost")
            if greedy_spec:
                run["greedy"] = await greedy_reference(runner, s, greedy_spec, loop, server, log)
        finally:
            poller.cancel()
        run["records"], run["polls"], run["skipped"] = runner.records, runner.polls, runner.skipped
    return run


async def greedy_reference(runner, s, spec, loop, server, log):
    """Each distinct request of the group in the phase, sent again alone on the idle server: with
    greedy sampling its text must equal what it got under load (preempted or not)."""
    await loop.run_in_executor(None, server.wait_idle, 120)
    phase = next(ph for ph in s["phases"] if ph["name"] == spec["phase"])
    clients = {c["name"]: c for c in phase["clients"]}
    recs = [r for r in runner.records if r.phase == spec["phase"] and r.group == spec["group"]]
    refs = {}
    for r in recs:
        key = (r.client, r.prompt_index, r.max_tokens)
        if key in refs:
            continue
        c = clients[r.client]
        ref = type(r)(0, "reference", r.client, r.user, r.group, r.route, r.prompt_index, r.max_tokens, r.temperature)
        await runner.send(ref, runner._prompt(c, r.prompt_index, None))
        runner.records.remove(ref)
        refs[key] = ref
    mismatches = sum(1 for r in recs if not r.ok or not refs[(r.client, r.prompt_index, r.max_tokens)].ok
                     or r.text != refs[(r.client, r.prompt_index, r.max_tokens)].text)
    log(f"    greedy reference: {len(recs)} {spec['group']} requests against {len(refs)} alone: {mismatches} differ")
    return {"phase": spec["phase"], "checked": len(recs), "mismatches": mismatches, "references": len(refs)}


def cross_mode(s, runs):
    """Both modes' metrics of one round, plus QoS / FCFS ratios per phase."""
    m = {}
    for mode, run in runs.items():
        m.update(analysis.analyse(run, s, mode))
    for ph in s["phases"]:
        name = ph["name"]
        q, f = m.get(f"qos.{name}.total.output_tokens_per_s"), m.get(f"fcfs.{name}.total.output_tokens_per_s")
        m[f"ratio.{name}.throughput_qos_over_fcfs"] = q / f if q and f else None
        for g in {r.group for run in runs.values() for r in run["records"] if r.phase == name}:
            for p in ("p50", "p99"):
                qg, fg = m.get(f"qos.{name}.{g}.ttft_{p}_s"), m.get(f"fcfs.{name}.{g}.ttft_{p}_s")
                m[f"ratio.{name}.{g}.ttft_{p}_qos_over_fcfs"] = qg / fg if qg and fg else None
    return m


def median_metrics(rounds):
    """Per metric, the median over the rounds that measured it (counts of lost requests and
    mismatches: the worst round, so that one bad round is never hidden)."""
    out = {}
    for key in {k for m in rounds for k in m}:
        values = sorted(m[key] for m in rounds if m.get(key) is not None)
        if not values:
            out[key] = None
        elif key.endswith((".lost", ".mismatches", ".errors")):
            out[key] = values[-1]
        else:
            mid = len(values) // 2
            out[key] = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    return out


def run_mode(s, variant, mode, args, out, log, round_index=None):
    qos_config = variant["qos_config"]
    config = qos_config if mode == "qos" else scen.fcfs_config(qos_config)
    tag = f"{variant['name'].replace(' ', '_').replace('/', '-')}.{mode}"
    if round_index is not None:
        tag += f".round{round_index + 1}"
    if args.url:
        server = srv.connect(args.url, args.keys, args.cacert, args.qos_config_path)
    else:
        server = srv.start(args.binary, args.model, out / f"state.{tag}", config, s["server"], plain_route_users(s),
                           out / f"{tag}.server.log")
    log(f"{report.MODE_TITLE[mode]} ({tag}): {server.url}")
    try:
        run = asyncio.run(drive(server, s, qos_config, mode, log))
    finally:
        server.stop()
    run["tag"] = tag
    report.write_requests_csv(out / f"{tag}.requests.csv", run["records"])
    report.write_polls_csv(out / f"{tag}.polls.csv", run["polls"])
    return run


def main(argv=None):
    args = parse_args(argv or sys.argv[1:])
    try:
        s = scen.load(args.scenario, check=args.check)
    except scen.ScenarioError as e:
        print(f"qosbench: {e}", file=sys.stderr)
        return 2
    if args.threads is not None:
        s["server"]["threads"] = args.threads
    scale(s, args.duration_scale)
    modes = [m for m in args.modes.split(",") if m]
    if any(m not in ("qos", "fcfs") for m in modes) or not modes:
        print("qosbench: --modes takes qos, fcfs or qos,fcfs", file=sys.stderr)
        return 2
    if args.url:
        if not args.keys:
            print("qosbench: --url needs --keys", file=sys.stderr)
            return 2
        modes = modes[:1]
    if args.rounds < 1:
        print("qosbench: --rounds must be 1 or more", file=sys.stderr)
        return 2
    planned = (sum(ph["duration_s"] + ph["drain_timeout_s"] for ph in s["phases"]) * len(modes) * len(s["variants"])
               * args.rounds)
    if planned > args.max_run_s:
        print(f"qosbench: the scenario may take up to {planned:.0f}s (phases + drain bounds), over --max-run-s "
              f"{args.max_run_s:.0f}", file=sys.stderr)
        return 2
    out = Path(args.out or ROOT / "build/qosbench" / (s["name"] + ("-check" if args.check else "")))
    out.mkdir(parents=True, exist_ok=True)
    lines = []

    def log(text=""):
        print(text, flush=True)
        lines.append(text)

    log(f"qosbench: scenario {s['name']} ({s['path']}){' [check: short version]' if args.check else ''}")
    log(f"  {s.get('description', '')}")
    log(report.machine())
    so = s["server"]
    log(f"server: tiergate {report.git_revision()} ({args.binary}), model {Path(args.model).name}, "
        f"--max-num-seqs {so['max_num_seqs']} --max-num-batched-tokens {so['max_num_batched_tokens']} "
        f"--kv-cache-blocks {so['kv_cache_blocks']} --threads {so['threads']}; loopback HTTPS, certificate verified")
    began = time.monotonic()
    all_metrics, failures, pngs = {}, 0, []
    for vi, variant in enumerate(s["variants"]):
        per_round = []
        for k in range(args.rounds):
            order = modes if (vi + k) % 2 == 0 else list(reversed(modes))
            log("")
            log(f"== variant {variant['name']}" + (f", round {k + 1} of {args.rounds}" if args.rounds > 1 else "") +
                f": {' then '.join(report.MODE_TITLE[m] for m in order)}, identical load, each on a fresh server ==")
            runs = {}
            for mode in order:
                runs[mode] = run_mode(s, variant, mode, args, out, log, k if args.rounds > 1 else None)
            runs = {m: runs[m] for m in modes}
            per_round.append((runs, cross_mode(s, runs)))
        runs, m = per_round[-1]
        if args.rounds > 1:
            m = median_metrics([rm for _, rm in per_round])
        target_list = [t for t in s["targets"]
                       if t.get("variants") in (None, "*") or variant["name"] in t["variants"]]
        write_variant_report(s, variant, runs, m, modes, out, log, args, pngs)
        if args.rounds > 1:
            log("")
            log(f"-- per round (the tables above show the median over {args.rounds} rounds; plots: the last round) --")
            keys = sorted({t["metric"] for t in target_list if "metric" in t} |
                          {sub["metric"] for t in target_list for sub in t.get("any_of", [])})
            log(report.table([[key] + [report.fmt(rm.get(key)) for _, rm in per_round] for key in keys],
                             ["metric"] + [f"round {i + 1}" for i in range(args.rounds)]))
        verdicts = report.evaluate_targets(m, target_list)
        if verdicts:
            log("")
            log(f"targets ({variant['name']}{', medians over the rounds' if args.rounds > 1 else ''}):")
            for ok, line in verdicts:
                log(line)
                failures += not ok
        all_metrics[variant["name"]] = m
    log("")
    log(f"qosbench: {time.monotonic() - began:.0f}s; results in {out}")
    for p in pngs:
        log(f"  {p}")
    (out / "metrics.json").write_text(json.dumps(all_metrics, indent=1, sort_keys=True))
    (out / "report.txt").write_text("\n".join(lines) + "\n")
    if args.check:
        log(f"qosbench --check: {'all targets met' if not failures else f'{failures} target(s) missed'}")
        return 1 if failures else 0
    return 0


def write_variant_report(s, variant, runs, m, modes, out, log, args, pngs):
    config = variant["qos_config"]
    group_order = config.get("user_groups", [])
    for ph in s["phases"]:
        groups = sorted({r.group for run in runs.values() for r in run["records"] if r.phase == ph["name"]},
                        key=lambda g: (group_order.index(g) if g in group_order else len(group_order), g))
        log("")
        log(f"-- phase {ph['name']} ({ph['duration_s']:.0f}s, measured after {ph['warmup_s']:.0f}s warm-up; client-side "
            f"TTFT/ITL, tok/s = output tokens/s) --")
        server_groups = []
        for run in runs.values():
            for g in run["phases"][ph["name"]]["qos_after"]["groups"]:
                if g["name"] not in server_groups and (g["name"] in groups or g["name"] == "fcfs"):
                    server_groups.append(g["name"])
        log(report.phase_table(m, modes, ph["name"], groups, server_groups))
    iso = s["analysis"].get("isolation")
    if iso:
        log("")
        log(f"-- isolation: {iso['group']} under the {iso['load_phase']} phase vs idle ({iso['idle_phase']}) --")
        log(report.isolation_table(m, modes, iso, iso["load_phase"]))
    for phase in s["analysis"].get("shares", {}).get("phases", []):
        users = []
        for run in runs.values():
            for r in run["records"]:
                if r.phase == phase and (r.user, r.group) not in users:
                    users.append((r.user, r.group))
        users.sort(key=lambda x: (group_order.index(x[1]) if x[1] in group_order else 99, x[0]))
        if len(users) > 16:  # many users: the heaviest few and the users the targets name
            named = {t["metric"].split(".user.")[1].split(".")[0] for t in s["targets"] if ".user." in t["metric"]}
            users = [u for u in users if u[0] in named] + [u for u in users if u[0] not in named][:12]
        log("")
        log(f"-- weighted-token shares in phase {phase} (served tokens as charged, read from /admin/qos every 0.5 s; "
            f"quota = quota share among the backlogged users) --")
        log(report.shares_table(m, modes, phase, users, s["analysis"]["shares"].get("window_s", 10)))
    sim = s["analysis"].get("lmdeploy_sim")
    if sim and "qos" in runs:
        import simcompare
        phases = sim.get("phases", [ph["name"] for ph in s["phases"]])
        step = m.get(f"qos.{phases[-1]}.total.step_mean_s")
        log("")
        log(f"-- modelled (qos-sim, not the real server): the QoS run's arrivals in {', '.join(phases)} replayed "
            f"open-loop; tiergate's queue vs FCFS vs LMDeploy's request-count policy; batch "
            f"{s['server']['max_num_seqs']}, {s['server']['max_num_batched_tokens']} tokens/step, "
            f"{1000 * (step or 0.015):.0f} ms/step (the real server's mean) --")
        log(simcompare.run(out, runs["qos"]["tag"], runs["qos"], phases, config, s["server"], step, args.qos_sim))
    if not args.no_plots:
        import plots
        tag = variant["name"].replace(" ", "_").replace("/", "-")
        title = f"{s['name']} / {variant['name']} (measured under load on a shared machine)"
        for phase in s["analysis"].get("shares", {}).get("phases", []):
            p = out / f"{tag}.shares.{phase}.png"
            plots.shares(p, runs, phase, title, s["analysis"]["shares"].get("window_s", 10))
            pngs.append(p)
        p = out / f"{tag}.ttft_cdf.png"
        plots.ttft_cdf(p, runs, [ph["name"] for ph in s["phases"]], title, group_order)
        pngs.append(p)
        p = out / f"{tag}.queue_depth.png"
        plots.queue_depth(p, runs, title, group_order)
        pngs.append(p)


if __name__ == "__main__":
    sys.exit(main())
