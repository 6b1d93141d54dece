#!/usr/bin/env python3
"""Hugging Face transformers side of the generation comparison (see generate.sh).

Greedy, fixed-length generation from SmolLM2-135M-Instruct (the same Q4_1 GGUF, dequantised
to f32 by transformers) for the same batch of chat prompts; prints the median wall time of
`--repeats` runs and new tokens per second.

Usage: python generate_hf.py GGUF_PATH --batch 4 --new-tokens 64 --threads 2
Needs: pip install torch transformers gguf accelerate
"""
import argparse
import statistics
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

PROMPTS = [
    "What is the capital of France?",
    "Write a short story about a robot.",
    "Explain photosynthesis in one paragraph.",
    "List three uses of a paperclip.",
    "Why is the sky blue?",
    "Give me a recipe for pancakes.",
    "What is 12 + 30?",
    "Describe the ocean.",
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    directory, name = args.gguf.rsplit("/", 1)
    tok = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32).eval()
    prompts = [
        tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in (PROMPTS * 4)[: args.batch]
    ]
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate(
                **enc,
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id or 2,
            )
        times.append(time.perf_counter() - start)
    new = (out.shape[1] - enc["input_ids"].shape[1]) * args.batch
    median = statistics.median(times)
    print(f"transformers {median:.2f} s median of {args.repeats} ({new} new tokens, {new / median:.1f} tokens/s)")


if __name__ == "__main__":
    main()
