#!/usr/bin/env python3
"""Writes the engine's reference fixtures with llama.cpp (PyPI llama-cpp-python) on the default
GGUF, so that tiergate is checked against an independent implementation:

  tests/engine/fixtures/tokenizer_corpus.json   text -> token ids (plain and with special tokens)
  tests/engine/fixtures/greedy_continuations.json   prompt ids -> greedy next tokens, with the
                                                     top-2 logit gap at each step (ties explain
                                                     legitimate divergence)

llama.cpp is run with flash attention on (its F16 KV path) and one token per llama_decode call, with
a context under 512 cells: that keeps every step on ggml's single-query flash-attention kernel,
whose arithmetic tiergate's CPU engine reproduces exactly (see kernels/cpu/paged_attention.cpp).
Its quantised matmul sums in another order (kernels/cpu/isa_kernels.h), so the tests compare up to
near ties (tests/engine/model_fixture.h).

Usage (from the repo root, after `bash tools/fetch_model.sh`):
  python3 -m venv /tmp/llama && /tmp/llama/bin/pip install llama-cpp-python==0.3.36
  /tmp/llama/bin/python tools/make_reference_fixtures.py [models/SmolLM2-135M-Instruct.Q4_1.gguf]
"""
import json
import sys
from pathlib import Path

import llama_cpp
from llama_cpp import Llama

MODEL = sys.argv[1] if len(sys.argv) > 1 else "models/SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = Path("tests/engine/fixtures")

CORPUS = [
    "Hello world",
    "Hello, world! How are you doing today?",
    "I'm sure they've said it's fine, but we'll see what you'd do. HE'S here and 'tis done.",
    "The quick brown fox jumps over the lazy dog.",
    "Numbers: 0 7 42 1234567890 3.14159 -273.15 1,000,000 and 2024-11-21T13:48:09Z",
    "Whitespace:   three spaces, a\ttab, two\n\nnewlines, trailing   ",
    "   leading spaces and \r\n windows line endings\r\n",
    "def square(x):\n    return x ** 2  # comment\n\nclass Foo(Bar):\n\tpass\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
    "{\"model\": \"smollm2\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}",
    "https://example.com/path?query=1&other=two#frag",
    "你好，世界！这是一个测试。",
    "日本語のテキストとカタカナ、ひらがな。",
    "한국어 문장입니다.",
    "Привет, мир! Как дела?",
    "Γειά σου Κόσμε",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "Emoji: 👍 👍🏽 👨‍👩‍👧 🇫🇷 ❤️ 🤖",
    "Combining marks: e\u0301 a\u0308 n\u0303 \u0915\u094d\u0937",
    "Math: ∑ x² ≤ ∞, α+β=γ, √2 ≈ 1.414",
    "Non-breaking\u00a0space and zero\u200bwidth and ideographic\u3000space",
    "<|im_start|>user\nThis is plain text, not a control token<|im_end|>",
    "MiXeD CaSe WoRdS and ALLCAPS and lowercase",
    "a" * 200,
    "1234567890" * 10,
    "'s 't 're 've 'm 'll 'd '",
    "!!!??? ... --- *** ### @@@ $$$ %%% ^^^ &&& ((( ))) [[[ ]]] {{{ }}}",
    "tab\tseparated\tvalues\n1\t2\t3",
    "",
    " ",
    "\n",
]

SPECIAL = [
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nWrite a haiku about autumn.<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>Plain text after an end token<|im_end|>",
]

CHAT_SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
PROMPTS = [
    ("chat", CHAT_SYSTEM + "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"),
    ("chat", CHAT_SYSTEM + "<|im_start|>user\nWrite a short poem about the sea.<|im_end|>\n<|im_start|>assistant\n"),
    ("chat", CHAT_SYSTEM + "<|im_start|>user\nExplain what a GPU is in one paragraph.<|im_end|>\n<|im_start|>assistant\n"),
    ("chat", CHAT_SYSTEM + "<|im_start|>user\nList three fruits.<|im_end|>\n<|im_start|>assistant\n"),
    ("text", "The history of the Roman Empire"),
    ("text", "def fibonacci(n):\n"),
    ("text", "Once upon a time, in a small village,"),
    ("text", "1, 2, 3, 4, 5,"),
]
STEPS = 48


def main():
    llm = Llama(model_path=MODEL, n_ctx=384, n_batch=512, logits_all=True, n_threads=2,
                seed=0, verbose=False, flash_attn=True)
    corpus = []
    for text in CORPUS:
        corpus.append({"text": text, "special": False,
                       "ids": llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)})
    for text in SPECIAL:
        corpus.append({"text": text, "special": True,
                       "ids": llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)})
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "tokenizer_corpus.json").write_text(json.dumps(
        {"model_sha256_prefix": "b179c952", "llama_cpp_python": llama_cpp.__version__, "cases": corpus},
        ensure_ascii=False, indent=1) + "\n")

    eos = llm.token_eos()
    im_end = llm.tokenize(b"<|im_end|>", add_bos=False, special=True)[0]
    cases = []
    for kind, prompt in PROMPTS:
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        llm.reset()
        for token in ids:  # one token per decode: the single-query kernel throughout
            llm.eval([token])
        generated, gaps = [], []
        for _ in range(STEPS):
            logits = llm.scores[llm.n_tokens - 1]
            order = sorted(range(len(logits)), key=lambda i: -logits[i])[:2]
            token = order[0]
            generated.append(token)
            gaps.append(round(float(logits[order[0]] - logits[order[1]]), 5))
            if token in (eos, im_end):
                break
            llm.eval([token])
        cases.append({"kind": kind, "prompt": prompt, "prompt_ids": ids, "greedy": generated, "top2_gap": gaps})
    (OUT / "greedy_continuations.json").write_text(json.dumps(
        {"model_sha256_prefix": "b179c952", "llama_cpp_python": llama_cpp.__version__,
         "settings": "flash_attn=True (F16 KV), n_ctx=384, one token per decode", "cases": cases},
        ensure_ascii=False, indent=1) + "\n")
    print("wrote", len(corpus), "tokenizer cases and", len(cases), "greedy continuations")


if __name__ == "__main__":
    main()
