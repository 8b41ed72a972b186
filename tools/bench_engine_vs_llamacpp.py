#!/usr/bin/env python3
"""Side by side, in one run on this machine, on the same GGUF: tiergate's embedded engine
(`tiergate bench-engine`) forced to each x86 ISA level with TIERGATE_CPU_ISA, against llama.cpp
(PyPI llama-cpp-python built from source for the same level, one venv per level,
tools/llamacpp_venv.sh).

  batch 1:  prompt-processing and decode tokens/s of one sequence
  batch 16: prefill and aggregate decode tokens/s of 16 concurrent sequences (llama.cpp through its
            batch API with 16 sequence ids, i.e. what its server does with 16 parallel slots)

Runs alternate (llama.cpp, tiergate, next level, ...) round after round so that the noise of a
shared machine hits both sides alike; medians and the ratios of medians are printed, with the CPU
model and flags. Then `tiergate bench-engine` at batch 1/4/16/64 for each level.

Usage (from the repo root, after `bash tools/build.sh` and `bash tools/fetch_model.sh`):
  bash tools/llamacpp_venv.sh avx2 && bash tools/llamacpp_venv.sh avx512      # ~10 min each
  python3 tools/bench_engine_vs_llamacpp.py [--levels avx2,avx512] [--threads 2] [--rounds 3]"""
import argparse
import json
import os
import subprocess
import sys
import time

MODEL = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
TEXT = ("The history of computing is a story of abstraction. Early machines were programmed by wiring "
        "panels; later came stored programs, assemblers, compilers and operating systems. ") * 8
TIERGATE = "build/release/gateway/tiergate"


def llama_batched(threads, n_prompt, n_gen, n_seq):
    """Runs inside a level's venv (--llama-worker): prefill and decode tokens/s of n_seq sequences."""
    import numpy as np
    import llama_cpp
    llama_cpp.llama_backend_init()
    mparams = llama_cpp.llama_model_default_params()
    model = llama_cpp.llama_model_load_from_file(MODEL.encode(), mparams)
    vocab = llama_cpp.llama_model_get_vocab(model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = n_seq * (n_prompt + n_gen) + 256
    cparams.n_batch = max(512, n_seq)
    cparams.n_ubatch = max(512, n_seq)
    cparams.n_seq_max = n_seq
    cparams.n_threads = threads
    cparams.n_threads_batch = threads
    ctx = llama_cpp.llama_init_from_model(model, cparams)
    seqs = []
    for i in range(n_seq):
        text = (f"Request {i}: " + TEXT).encode()
        buf = (llama_cpp.llama_token * 8192)()
        k = llama_cpp.llama_tokenize(vocab, text, len(text), buf, 8192, False, False)
        assert k >= n_prompt, "prompt text too short"
        seqs.append(list(buf[:n_prompt]))
    batch = llama_cpp.llama_batch_init(max(512, n_seq), 0, n_seq)

    def submit(entries):
        """Decodes (token, pos, seq, want_logits) entries in chunks; returns {seq: greedy next token}."""
        nxt = {}
        for start in range(0, len(entries), 512):
            chunk = entries[start:start + 512]
            batch.n_tokens = len(chunk)
            for i, (tok, pos, seq, want) in enumerate(chunk):
                batch.token[i], batch.pos[i] = tok, pos
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = seq
                batch.logits[i] = want
            assert llama_cpp.llama_decode(ctx, batch) == 0
            for i, (tok, pos, seq, want) in enumerate(chunk):
                if want:
                    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, i), shape=(n_vocab,))
                    nxt[seq] = int(np.argmax(logits))
        return nxt

    t0 = time.perf_counter()
    last = submit([(tok, p, s, p == n_prompt - 1) for s, toks in enumerate(seqs) for p, tok in enumerate(toks)])
    t1 = time.perf_counter()
    for step in range(n_gen - 1):
        last = submit([(last[s], n_prompt + step, s, True) for s in range(n_seq)])
    t2 = time.perf_counter()
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
    return {"prefill_tps": n_seq * n_prompt / (t1 - t0), "decode_tps": n_seq * (n_gen - 1) / (t2 - t1)}


def theirs(level, threads, n_prompt, n_gen, n_seq):
    python = f".cache/llama-{level}/bin/python"
    if not os.path.exists(python):
        sys.exit(f"no llama.cpp build for {level}: run `bash tools/llamacpp_venv.sh {level}` first")
    out = subprocess.run([python, __file__, "--llama-worker", "--threads", str(threads), "--prompt", str(n_prompt),
                          "--gen", str(n_gen), "--seqs", str(n_seq)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ours(level, threads, n_prompt, n_gen, batches):
    env = dict(os.environ, TIERGATE_CPU_ISA=level)
    out = subprocess.run([TIERGATE, "bench-engine", "--json", "--device", "cpu", "--threads", str(threads),
                          "--prompt-tokens", str(n_prompt), "--gen-tokens", str(n_gen),
                          "--batch", ",".join(map(str, batches))], check=True, capture_output=True, text=True, env=env)
    rows = {r["batch"]: r for r in map(json.loads, out.stdout.splitlines())}
    assert all(r["isa"] == level for r in rows.values()), "tiergate ran another ISA level than forced"
    return rows


def cpu_line():
    model, flags = "unknown CPU", set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and model == "unknown CPU":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    shown = [f for f in ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq", "avx512vl",
                         "avx512_vnni", "avx_vnni", "avx512_bf16") if f in flags]
    return f"{model}, {os.cpu_count()} CPUs, flags: {' '.join(shown)}"


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", default="avx2,avx512", help="comma-separated TIERGATE_CPU_ISA levels")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3, help="alternating runs per side; medians are reported")
    ap.add_argument("--engine-batches", default="1,4,16,64", help="bench-engine batches per level ('' skips)")
    ap.add_argument("--llama-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--seqs", type=int, default=1, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.llama_worker:
        print(json.dumps(llama_batched(a.threads, a.prompt, a.gen, a.seqs)))
        return
    levels = [l for l in a.levels.split(",") if l]
    print(f"CPU: {cpu_line()}")
    print(f"SmolLM2-135M-Instruct Q4_1, {a.threads} threads, {a.prompt} prompt + {a.gen} generated tokens per sequence, "
          f"median of {a.rounds} alternating runs; llama.cpp built per level (tools/llamacpp_venv.sh)", flush=True)
    runs = {(l, n): ([], []) for l in levels for n in (1, 16)}
    for _ in range(a.rounds):  # alternate, so that machine noise hits both sides alike
        for level in levels:
            for n_seq in (1, 16):
                mine_runs, their_runs = runs[(level, n_seq)]
                their_runs.append(theirs(level, a.threads, a.prompt, a.gen, n_seq))
                mine_runs.append(ours(level, a.threads, a.prompt, a.gen, [n_seq])[n_seq])
    print("level  | batch | tiergate prefill tok/s | llama.cpp prefill tok/s | ratio | tiergate decode tok/s | llama.cpp decode tok/s | ratio")
    for level in levels:
        for n_seq in (1, 16):
            mine_runs, their_runs = runs[(level, n_seq)]
            m = {k: median([r[k] for r in mine_runs]) for k in ("prefill_tps", "decode_tps")}
            t = {k: median([r[k] for r in their_runs]) for k in ("prefill_tps", "decode_tps")}
            print(f"{level:6s} | {n_seq:5d} | {m['prefill_tps']:22.1f} | {t['prefill_tps']:23.1f} | {m['prefill_tps'] / t['prefill_tps']:5.2f} |"
                  f" {m['decode_tps']:21.1f} | {t['decode_tps']:22.1f} | {m['decode_tps'] / t['decode_tps']:5.2f}", flush=True)
    batches = [int(b) for b in a.engine_batches.split(",") if b]
    if not batches:
        return
    print(f"\ntiergate bench-engine, decode tok/s (aggregate), median of {a.rounds} alternating runs")
    print("level  | " + " | ".join(f"batch {b:3d}" for b in batches) + " | batch 64 / batch 16")
    engine_runs = {l: [] for l in levels}
    for _ in range(a.rounds):
        for level in levels:
            engine_runs[level].append(ours(level, a.threads, a.prompt, a.gen, batches))
    for level in levels:
        med = {b: median([r[b]["decode_tps"] for r in engine_runs[level]]) for b in batches}
        ratio = f"{med[64] / med[16]:.2f}" if 16 in med and 64 in med else "-"
        print(f"{level:6s} | " + " | ".join(f"{med[b]:9.1f}" for b in batches) + f" | {ratio}")


if __name__ == "__main__":
    main()
