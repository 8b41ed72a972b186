"""LMDeploy's request-count policy, where a scenario asks for it: the QoS run's own arrivals (time,
user, prompt and output tokens as served) replayed open-loop through tools/qos_sim, which runs
tiergate's queue, FCFS and LMDeploy's former policy on a modelled engine of the same batch shape,
its step time set to the mean step the real server measured. LMDeploy's policy cannot run on the
real server, so this column is modelled, and a closed-loop scenario's arrivals are replayed as
they happened rather than reacting to service: the report says so."""
import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QOS_SIM = ROOT / "build/release/tools/qos_sim/qos-sim"


def run(out_dir, tag, run_data, phases, qos_config, server_opts, step_mean_s, binary=QOS_SIM):
    """The qos-sim side-by-side table as text, or a line saying why there is none."""
    if not Path(binary).exists():
        return f"(qos-sim not built: cmake --build build/release --target qos-sim; {binary} missing)"
    rows = []
    for name in phases:
        ph = run_data["phases"][name]
        for r in run_data["records"]:
            if r.phase != name:
                continue
            rows.append({"t": round(max(0.0, r.sent - ph["start"]) + (ph["start"] - run_data["phases"][phases[0]]["start"]), 4),
                         "user": r.user, "prompt": max(1, r.prompt_tokens or 1),
                         "output": max(1, r.completion_tokens or r.max_tokens)})
    if not rows:
        return "(no arrivals to replay)"
    rows.sort(key=lambda x: x["t"])
    workload = Path(out_dir) / f"{tag}.qos_sim_workload.jsonl"
    workload.write_text("".join(json.dumps(x) + "\n" for x in rows))
    config = Path(out_dir) / f"{tag}.qos_sim_config.json"
    config.write_text(json.dumps(qos_config, indent=2))
    cmd = [str(binary), "--workload", str(workload), "--config", str(config),
           "--batch", str(server_opts["max_num_seqs"]), "--budget", str(server_opts["max_num_batched_tokens"]),
           "--step-ms", f"{1000 * (step_mean_s or 0.015):.3f}", "--token-us", "0"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        return f"(qos-sim failed: {p.stderr.strip()})"
    return p.stdout.rstrip()
