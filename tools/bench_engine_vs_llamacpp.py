#!/usr/bin/env python3
"""Side by side, in one run on this machine, on the same GGUF: tiergate's embedded engine
(`tiergate bench-engine`) against llama.cpp (PyPI llama-cpp-python, built from source here).

  batch 1:  prompt-processing and decode tokens/s of one sequence (llama.cpp through `Llama`)
  batch 16: aggregate decode tokens/s of 16 concurrent sequences (llama.cpp through its batch API
            with 16 sequence ids, i.e. what its server does with 16 parallel slots)

Usage (from the repo root, after `bash tools/build.sh` and `bash tools/fetch_model.sh`):
  python3 -m venv /tmp/llama && /tmp/llama/bin/pip install llama-cpp-python==0.3.36 numpy
  /tmp/llama/bin/python tools/bench_engine_vs_llamacpp.py [--threads 2] [--prompt 128] [--gen 64]
Prints the numbers and the ratios ours / llama.cpp."""
import argparse
import ctypes
import json
import subprocess
import time

import numpy as np
import llama_cpp

MODEL = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
TEXT = ("The history of computing is a story of abstraction. Early machines were programmed by wiring "
        "panels; later came stored programs, assemblers, compilers and operating systems. ") * 8


def prompts(vocab, n, count):
    out = []
    for i in range(count):
        text = (f"Request {i}: " + TEXT).encode()
        buf = (llama_cpp.llama_token * 8192)()
        k = llama_cpp.llama_tokenize(vocab, text, len(text), buf, 8192, False, False)
        assert k >= n, "prompt text too short"
        out.append(list(buf[:n]))
    return out


def llama_batched(threads, n_prompt, n_gen, n_seq):
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
    seqs = prompts(vocab, n_prompt, n_seq)
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


def ours(threads, n_prompt, n_gen, batches):
    out = subprocess.run(["build/release/gateway/tiergate", "bench-engine", "--json", "--threads", str(threads),
                          "--prompt-tokens", str(n_prompt), "--gen-tokens", str(n_gen),
                          "--batch", ",".join(map(str, batches))], check=True, capture_output=True, text=True)
    return {r["batch"]: r for r in map(json.loads, out.stdout.splitlines())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3, help="alternating runs per side; medians are reported")
    a = ap.parse_args()
    llama_cpp.llama_backend_init()
    rows = []
    for n_seq in (1, 16):
        mine_runs, their_runs = [], []
        for _ in range(a.rounds):  # alternate, so that machine noise hits both sides alike
            their_runs.append(llama_batched(a.threads, a.prompt, a.gen, n_seq))
            mine_runs.append(ours(a.threads, a.prompt, a.gen, [n_seq])[n_seq])
        median = lambda runs, key: sorted(r[key] for r in runs)[len(runs) // 2]
        mine = {k: median(mine_runs, k) for k in ("prefill_tps", "decode_tps")}
        theirs = {k: median(their_runs, k) for k in ("prefill_tps", "decode_tps")}
        rows.append((n_seq, mine, theirs))
    print(f"SmolLM2-135M-Instruct Q4_1, {a.threads} threads, {a.prompt} prompt + {a.gen} generated tokens per sequence, "
          f"median of {a.rounds} alternating runs")
    print("batch | tiergate prefill tok/s | llama.cpp prefill tok/s | ratio | tiergate decode tok/s | llama.cpp decode tok/s | ratio")
    for n_seq, mine, theirs in rows:
        print(f"{n_seq:5d} | {mine['prefill_tps']:22.1f} | {theirs['prefill_tps']:23.1f} | {mine['prefill_tps'] / theirs['prefill_tps']:5.2f} |"
              f" {mine['decode_tps']:21.1f} | {theirs['decode_tps']:22.1f} | {mine['decode_tps'] / theirs['decode_tps']:5.2f}")


if __name__ == "__main__":
    main()
