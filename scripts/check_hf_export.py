#!/usr/bin/env python3
"""Checks that Hugging Face transformers loads a directory written by `bpo export` (or any
bpo checkpoint) and computes the same logits as the reference fixture of the source GGUF.

Usage: python scripts/check_hf_export.py EXPORTED_DIR crates/model/tests/fixtures/smollm2_reference.json
Needs: pip install torch transformers
"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main(model_dir: str, reference_path: str) -> None:
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    reference = json.load(open(reference_path))
    worst = 0.0
    for case in reference["cases"]:
        ids = tok(case["prompt"], add_special_tokens=False)["input_ids"]
        assert ids == case["ids"], f"tokenizer differs on {case['prompt']!r}: {ids} vs {case['ids']}"
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
        for pos, want in enumerate(case["positions"]):
            for i, v in zip(want["top_ids"], want["top_logits"]):
                worst = max(worst, abs(logits[pos, i].item() - v))
    chat = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                   tokenize=False, add_generation_prompt=True)
    enc = tok(chat, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**enc, max_new_tokens=20, do_sample=False)
    text = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    print(f"max |logit - reference| = {worst:.2e}; greedy answer: {text!r}")
    assert worst < 1e-3, worst


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
