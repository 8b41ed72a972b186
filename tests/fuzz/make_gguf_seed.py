#!/usr/bin/env python3
"""Writes a complete (tiny, random-weight) Llama GGUF with a byte-level BPE tokenizer, so that the
fuzzer starts from a file that passes every check and mutates from there. Deterministic. The build
writes it to <build>/tests/fuzz/corpus/gguf_fuzz/tiny_llama.gguf (git keeps no .gguf file):
  make_gguf_seed.py [OUTPUT]   (default: corpus/gguf_fuzz/tiny_llama.gguf beside this script)"""
import struct
import sys
from pathlib import Path


def gpt2_byte_text():
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    out, extra = {}, 0
    for b in range(256):
        if b in printable:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


def s(text):
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def kv(key, type_id, payload):
    return s(key) + struct.pack("<I", type_id) + payload


def strings(key, values):
    return kv(key, 9, struct.pack("<IQ", 8, len(values)) + b"".join(s(v) for v in values))


def ints(key, values):
    return kv(key, 9, struct.pack("<IQ", 5, len(values)) + b"".join(struct.pack("<i", v) for v in values))


def u32(key, v):
    return kv(key, 4, struct.pack("<I", v))


def f32(key, v):
    return kv(key, 6, struct.pack("<f", v))


def main():
    byte_text = gpt2_byte_text()
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [byte_text[b] for b in range(256)] + ["he", "ll", "hell"]
    types = [3, 3, 3] + [1] * (len(tokens) - 3)
    merges = ["h e", "l l", "he ll"]
    dim, ffn, heads, kv_heads, vocab = 8, 16, 2, 1, len(tokens)
    kv_width = kv_heads * dim // heads
    meta = [
        kv("general.architecture", 8, s("llama")), kv("general.name", 8, s("tiny")),
        u32("llama.embedding_length", dim), u32("llama.block_count", 1), u32("llama.attention.head_count", heads),
        u32("llama.attention.head_count_kv", kv_heads), u32("llama.feed_forward_length", ffn),
        u32("llama.context_length", 64), f32("llama.attention.layer_norm_rms_epsilon", 1e-5),
        kv("tokenizer.ggml.model", 8, s("gpt2")), kv("tokenizer.ggml.pre", 8, s("smollm")),
        strings("tokenizer.ggml.tokens", tokens), ints("tokenizer.ggml.token_type", types),
        strings("tokenizer.ggml.merges", merges), u32("tokenizer.ggml.bos_token_id", 1),
        u32("tokenizer.ggml.eos_token_id", 2),
        kv("tokenizer.chat_template", 8, s("{{'<|im_start|>' + message['role'] + '\\n'}}")),
    ]
    tensors = [("token_embd.weight", [dim, vocab]), ("output_norm.weight", [dim]),
               ("blk.0.attn_norm.weight", [dim]), ("blk.0.attn_q.weight", [dim, dim]),
               ("blk.0.attn_k.weight", [dim, kv_width]), ("blk.0.attn_v.weight", [dim, kv_width]),
               ("blk.0.attn_output.weight", [dim, dim]), ("blk.0.ffn_norm.weight", [dim]),
               ("blk.0.ffn_gate.weight", [dim, ffn]), ("blk.0.ffn_up.weight", [dim, ffn]),
               ("blk.0.ffn_down.weight", [ffn, dim])]
    infos, data = b"", b""
    for name, shape in tensors:
        count = 1
        for d in shape:
            count *= d
        infos += s(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
        infos += struct.pack("<IQ", 0, len(data))  # F32
        data += b"".join(struct.pack("<f", ((i * 2654435761) % 1000) / 1000.0 - 0.5) for i in range(count))
        data += b"\0" * (-len(data) % 32)
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta)) + b"".join(meta) + infos
    head += b"\0" * (-len(head) % 32)
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "corpus/gguf_fuzz/tiny_llama.gguf"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(head + data)
    print(f"{out}: {len(head) + len(data)} bytes")


if __name__ == "__main__":
    main()
