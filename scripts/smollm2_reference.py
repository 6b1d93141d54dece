#!/usr/bin/env python3
"""Reference logits of SmolLM2-135M-Instruct (Q4_1 GGUF) from Hugging Face transformers.

transformers dequantises the GGUF to f32 and runs its own Llama implementation; the test
`crates/model/tests/smollm2.rs` compares our logits on the same file against these numbers.

Usage: python scripts/smollm2_reference.py GGUF_PATH OUT_JSON
Needs: pip install torch transformers gguf
"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

PROMPTS = [
    "The capital of France is",
    "<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n<|im_start|>assistant\n",
]
TOP = 20  # top logits kept per position
PROBE = [0, 1, 2, 17, 100, 1000, 12345, 30000, 49151]  # fixed vocabulary probes


def main(gguf_path: str, out_path: str) -> None:
    torch.set_num_threads(2)
    directory, name = gguf_path.rsplit("/", 1)
    tok = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, torch_dtype=torch.float32)
    model.eval()
    cases = []
    for prompt in PROMPTS:
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
        positions = []
        for pos in range(len(ids)):
            row = logits[pos]
            top = torch.topk(row, TOP)
            positions.append({
                "top_ids": top.indices.tolist(),
                "top_logits": top.values.tolist(),
                "probe_logits": [row[i].item() for i in PROBE],
                "logsumexp": torch.logsumexp(row, 0).item(),
            })
        greedy = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)[0][len(ids):]
        cases.append({
            "prompt": prompt,
            "ids": ids,
            "probe_ids": PROBE,
            "positions": positions,
            "greedy_ids": greedy.tolist(),
        })
    with open(out_path, "w") as f:
        json.dump({"model": "SmolLM2-135M-Instruct.Q4_1.gguf", "transformers": __import__("transformers").__version__, "cases": cases}, f)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
