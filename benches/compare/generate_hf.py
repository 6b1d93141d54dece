#!/usr/bin/env python3
"""Hugging Face transformers side of the generation comparison (see generate.sh).

SmolLM2-135M-Instruct (the same GGUF, dequantised to f32 by transformers), 16-token prompts
(the ids of benches/generation.rs), 64 new tokens with EOS ignored: batch 1 greedy and batch 8
sampling (temperature 1, top-k 50). Prints the median of `--repeats` runs in new tokens/s.

Usage: python generate_hf.py GGUF_PATH --threads 2 --repeats 5
Needs: pip install torch transformers gguf accelerate
"""
import argparse
import statistics
import time

import torch
from transformers import AutoModelForCausalLM

PROMPT_TOKENS = 16
NEW_TOKENS = 64


def prompts(batch, vocab):
    return torch.tensor(
        [[3 + (i * 7919 + b * 104729) % (vocab - 3) for i in range(PROMPT_TOKENS)] for b in range(batch)]
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    directory, name = args.gguf.rsplit("/", 1)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32).eval()
    vocab = model.config.vocab_size
    for batch, sample in [(1, False), (8, True)]:
        ids = prompts(batch, vocab)
        kwargs = dict(do_sample=True, temperature=1.0, top_k=50) if sample else dict(do_sample=False)
        times = []
        for _ in range(args.repeats + 1):
            start = time.perf_counter()
            with torch.no_grad():
                out = model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=NEW_TOKENS,
                    min_new_tokens=NEW_TOKENS,
                    pad_token_id=2,
                    **kwargs,
                )
            times.append(time.perf_counter() - start)
        median = statistics.median(times[1:])
        new = (out.shape[1] - ids.shape[1]) * batch
        mode = "sample" if sample else "greedy"
        print(f"transformers batch{batch}-{mode}  {median:.2f} s median of {args.repeats}  {new / median:.1f} new tokens/s")


if __name__ == "__main__":
    main()
