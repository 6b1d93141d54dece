#!/usr/bin/env python3
"""PyTorch / transformers side of the BPO-phase comparison (see bpo_phase.sh): one collection
phase of online DAP done the usual way, at the experiment's settings, timed in three parts.

1. sampling: `model.generate` (top-k 50, temperature 1, 24 new tokens) with 2 samples per
   prompt, 16 prompts (32 sequences) per call as bpo, left padding; then VADER
   (vaderSentiment) scores each response and each prompt's two samples become a pair (ties
   and identical samples dropped);
2. reference: a no-grad forward of the behavior model over every pair (TRL's way of getting the
   reference log-probs; bpo records them while sampling instead);
3. training: one pass of DPO steps (beta 0.1, 8 pairs a step, AdamW, global-norm clip 1.0) on
   LoRA r16 (alpha 32) adapters on every linear layer of blocks 20-29.

Usage: python bpo_phase.py GGUF_PATH PROMPTS_JSONL --threads 2 --repeats 3
Needs: pip install torch transformers gguf vaderSentiment
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dpo_step import add_lora  # noqa: E402

# bpo's `sampling.batch_size = 32` is sequences per call: 16 prompts x 2 samples.
PROMPTS_PER_CALL = 16
SAMPLES = 2
NEW_TOKENS = 24
PAIRS_PER_STEP = 8
LORA_BLOCKS = range(20, 30)


def sample(model, tok, prompts, vader):
    """Returns (prompt ids, chosen ids, rejected ids) triples."""
    pairs = []
    for start in range(0, len(prompts), PROMPTS_PER_CALL):
        chunk = prompts[start:start + PROMPTS_PER_CALL]
        enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**enc, do_sample=True, top_k=50, temperature=1.0,
                                 max_new_tokens=NEW_TOKENS, num_return_sequences=SAMPLES,
                                 pad_token_id=tok.pad_token_id)
        width = enc["input_ids"].shape[1]
        for i, text in enumerate(chunk):
            prompt_ids = tok(text, add_special_tokens=False)["input_ids"]
            responses = []
            for s in range(SAMPLES):
                ids = out[i * SAMPLES + s, width:].tolist()
                if tok.eos_token_id in ids:
                    ids = ids[:ids.index(tok.eos_token_id) + 1]
                responses.append(ids)
            if responses[0] == responses[1]:
                continue
            scores = [vader.polarity_scores(tok.decode(r, skip_special_tokens=True))["compound"]
                      for r in responses]
            if scores[0] == scores[1]:
                continue
            best = 0 if scores[0] > scores[1] else 1
            pairs.append((prompt_ids, responses[best], responses[1 - best]))
    return pairs


def batch_logps(model, rows, pad_id):
    """Sums of response log-probs of (prompt, response) rows, right-padded."""
    seqs = [p + r for p, r in rows]
    width = max(map(len, seqs))
    ids = torch.tensor([s + [pad_id] * (width - len(s)) for s in seqs])
    mask = torch.zeros(len(rows), width - 1)
    for i, (p, r) in enumerate(rows):
        mask[i, len(p) - 1:len(p) + len(r) - 1] = 1.0
    logits = model(input_ids=ids).logits[:, :-1]
    logps = torch.log_softmax(logits, dim=-1)
    tok = torch.gather(logps, 2, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (tok * mask).sum(-1)


def phase(model, tok, prompts, vader, beta=0.1):
    times = {}
    start = time.perf_counter()
    pairs = sample(model, tok, prompts, vader)
    times["sampling"] = time.perf_counter() - start
    batches = [pairs[i:i + PAIRS_PER_STEP] for i in range(0, len(pairs), PAIRS_PER_STEP)]

    def rows(batch):
        return [(p, c) for p, c, _ in batch] + [(p, r) for p, _, r in batch]

    start = time.perf_counter()
    with torch.no_grad():
        refs = [batch_logps(model, rows(b), tok.pad_token_id) for b in batches]
    times["reference"] = time.perf_counter() - start
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=3e-3, weight_decay=0.0)
    start = time.perf_counter()
    for batch, ref in zip(batches, refs):
        n = len(batch)
        logps = batch_logps(model, rows(batch), tok.pad_token_id)
        h = (logps[:n] - ref[:n]) - (logps[n:] - ref[n:])
        loss = -F.logsigmoid(beta * h).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    times["training"] = time.perf_counter() - start
    times["pairs"] = len(pairs)
    return times


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("gguf")
    parser.add_argument("prompts")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    with open(args.prompts) as f:
        prompts = [json.loads(line)["prompt"] for line in f if line.strip()]
    folder, name = os.path.dirname(args.gguf), os.path.basename(args.gguf)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    vader = SentimentIntensityAnalyzer()
    runs = []
    for repeat in range(args.repeats):
        torch.manual_seed(repeat)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        blocks = [model.model.layers[i] for i in LORA_BLOCKS]
        runs.append(phase(add_lora(model, blocks=blocks), tok, prompts, vader))
    for part in ("sampling", "reference", "training"):
        print(f"pytorch  {part:10s} {statistics.median(r[part] for r in runs):8.2f} s median")
    total = statistics.median(r["sampling"] + r["reference"] + r["training"] for r in runs)
    pairs = statistics.median(r["pairs"] for r in runs)
    print(f"pytorch  {'phase':10s} {total:8.2f} s median of {args.repeats} ({pairs:.0f} pairs)")


if __name__ == "__main__":
    main()
