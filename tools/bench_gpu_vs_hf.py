#!/usr/bin/env python3
"""Decode tokens/s of tiergate's GPU executor and HF transformers `generate` on the same Llama
shape with random weights, side by side in one run on the GPU machine (PyTorch and transformers
are installed there). Both: fp16, greedy, every sequence prompt_tokens long, decode_steps new
tokens each, KV cache on the GPU. HF's decode time is generate(decode_steps + 1 tokens) minus
generate(1 token), so its prefill is not counted; ours times decode steps only.

  python3 tools/bench_gpu_vs_hf.py [--binary build/release/tools/bench_gpu_decode]
                                   [--shape llama-1b] [--batch 1,16,64,256]
                                   [--prompt-tokens 128] [--decode-steps 128]
"""
import argparse
import json
import subprocess
import sys
import time

SHAPES = {
    "llama-1b": dict(vocab_size=128256, hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=64, intermediate_size=8192, rope_theta=500000.0,
                     tie_word_embeddings=True),
    "smollm2-135m": dict(vocab_size=49152, hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, head_dim=64, intermediate_size=1536, rope_theta=100000.0,
                         tie_word_embeddings=True),
}


def hf_decode_tps(shape, batches, prompt_tokens, decode_steps):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**SHAPES[shape], max_position_embeddings=8192, rms_norm_eps=1e-5)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.float16).eval()
    results = {}
    for b in batches:
        ids = torch.randint(0, config.vocab_size, (b, prompt_tokens), device="cuda")
        mask = torch.ones_like(ids)

        def generate(n):
            torch.cuda.synchronize()
            t = time.perf_counter()
            with torch.inference_mode():
                model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                               do_sample=False, use_cache=True, pad_token_id=0)
            torch.cuda.synchronize()
            return time.perf_counter() - t

        generate(2)  # warm-up
        prefill = min(generate(1) for _ in range(2))
        total = generate(decode_steps + 1)
        results[b] = b * decode_steps / max(total - prefill, 1e-9)
        print(f"HF transformers batch {b}: {results[b]:.1f} decode tok/s", file=sys.stderr, flush=True)
    del model
    torch.cuda.empty_cache()
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="build/release/tools/bench_gpu_decode")
    ap.add_argument("--shape", default="llama-1b", choices=sorted(SHAPES))
    ap.add_argument("--batch", default="1,16,64,256")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--decode-steps", type=int, default=128)
    args = ap.parse_args()
    batches = [int(b) for b in args.batch.split(",")]
    ours = {False: {}, True: {}}  # CUDA graphs off / on
    device = "?"
    weight_read_ms = 0.0
    for graphs in (False, True):
        cmd = [args.binary, "--shape", args.shape, "--batch", args.batch, "--prompt-tokens", str(args.prompt_tokens),
               "--decode-steps", str(args.decode_steps), "--json"] + (["--cuda-graphs"] if graphs else [])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                ours[graphs][r["batch"]] = r
                device, weight_read_ms = r["device"], r["weight_read_ms"]
            else:
                print(line)
    hf = hf_decode_tps(args.shape, batches, args.prompt_tokens, args.decode_steps)
    print(f"{args.shape} on {device}, fp16, {args.prompt_tokens} prompt + {args.decode_steps} decode tokens per sequence")
    print(f"{'batch':>5} {'eager tok/s':>12} {'graphs tok/s':>13} {'HF tok/s':>10} {'best/HF':>8} "
          f"{'step ms (graphs)':>17} {'step/weight read':>17}")
    for b in batches:
        if b not in ours[False] or b not in ours[True]:
            continue
        e, g = ours[False][b], ours[True][b]
        best = max(e["decode_tps"], g["decode_tps"])
        print(f"{b:>5} {e['decode_tps']:>12.1f} {g['decode_tps']:>13.1f} {hf[b]:>10.1f} {best / hf[b]:>8.2f} "
              f"{g['step_ms']:>17.3f} {g['step_ms'] / weight_read_ms if weight_read_ms else 0:>17.2f}")


if __name__ == "__main__":
    main()
