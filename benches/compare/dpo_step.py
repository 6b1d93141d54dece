#!/usr/bin/env python3
"""PyTorch side of the DPO step comparison (see dpo_step.sh): the same step as
benches/dpo_step.rs written by hand (fp32, eager): policy forward over chosen and rejected rows,
per-sequence response log-probs, DPO loss against precomputed reference log-probs, backward,
global-norm clipping, AdamW.

Rows: tiny random Llama (4 layers, d 256, 4 heads, ffn 1024, vocab 8192; 8 pairs of 32 + 96
tokens, full fine-tuning); SmolLM2-135M-Instruct (from the GGUF) with LoRA r=16 (alpha 32) on
all linear layers, and with full fine-tuning (4 pairs of 32 + 64 tokens). With --long, the long
rows instead (LONG_ROWS, LoRA r=16); --row NAME runs one row.

Usage: python dpo_step.py GGUF_PATH --threads 2 --repeats 10 [--long] [--row NAME]
       python dpo_step.py GGUF_PATH --list   (the long rows' names)
Needs: pip install torch transformers gguf accelerate
"""
import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoraLinear(torch.nn.Module):
    """y = W x + (alpha / r) * B A x, W frozen, A ~ N(0, 1/r), B = 0."""

    def __init__(self, base: torch.nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.base.weight.requires_grad_(False)
        self.a = torch.nn.Parameter(torch.randn(rank, base.in_features) / rank**0.5)
        self.b = torch.nn.Parameter(torch.zeros(base.out_features, rank))
        self.scale = alpha / rank

    def forward(self, x):
        return self.base(x) + (x @ self.a.t() @ self.b.t()) * self.scale


def add_lora(model, rank=16, alpha=32.0, blocks=None):
    """Freezes `model` and puts adapters on the TARGETS linears of `blocks` (default: all)."""
    for p in model.parameters():
        p.requires_grad_(False)
    roots = [model] if blocks is None else blocks
    for module in [m for root in roots for m in root.modules()]:
        for name, child in list(module.named_children()):
            if name in TARGETS and isinstance(child, torch.nn.Linear):
                setattr(module, name, LoraLinear(child, rank, alpha))
    return model


def ids(seed, length, vocab):
    return [3 + (i * 7919 + seed * 104729) % (vocab - 3) for i in range(length)]


def make_batch(pairs, prompt, response, vocab):
    chosen = [ids(3 * i, prompt, vocab) + ids(3 * i + 1, response, vocab) for i in range(pairs)]
    rejected = [ids(3 * i, prompt, vocab) + ids(3 * i + 2, response, vocab) for i in range(pairs)]
    return torch.tensor(chosen + rejected)


def bench(name, model, batch, prompt, repeats, beta=0.1):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-5, eps=1e-6, weight_decay=0.0)
    n = batch.shape[0] // 2
    ref = torch.full((2 * n,), -100.0)

    def step():
        logits = model(input_ids=batch).logits[:, prompt - 1 : -1]
        logps = torch.log_softmax(logits, dim=-1)
        tok = torch.gather(logps, 2, batch[:, prompt:].unsqueeze(-1)).squeeze(-1).sum(-1)
        h = (tok[:n] - ref[:n]) - (tok[n:] - ref[n:])
        loss = -F.logsigmoid(beta * h).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    tokens = batch.numel()
    print(f"pytorch  {name:28s} {median:8.3f} s/step median of {repeats}  {tokens / median:8.1f} policy tokens/s")


# The long rows (LoRA r=16 on SmolLM2), `--long`: pairs x (prompt + response), and a series of
# single pairs of growing length for the scaling table.
LONG_ROWS = [(2, 256, 256), (1, 768, 256), (1, 64, 64), (1, 128, 128), (1, 256, 256),
             (1, 512, 512), (1, 1024, 1024)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("gguf")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--long", action="store_true", help="the long rows instead of the short")
    parser.add_argument("--row", help="only the row of this name (e.g. 'smollm2-lora16/1x(768+256)')")
    parser.add_argument("--list", action="store_true", help="print the long rows' names and exit")
    args = parser.parse_args()
    long_names = [f"smollm2-lora16/{n}x({p}+{r})" for n, p, r in LONG_ROWS]
    if args.list:
        print("\n".join(long_names))
        return
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    path = args.gguf
    load = lambda: AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), torch_dtype=torch.float32).train()
    vocab = 49152
    wanted = lambda name: args.row is None or args.row == name
    if args.long:
        for name, (n, prompt, response) in zip(long_names, LONG_ROWS):
            if wanted(name):
                batch = make_batch(n, prompt, response, vocab)
                bench(name, add_lora(load()), batch, prompt, args.repeats)
        return
    config = LlamaConfig(vocab_size=8192, hidden_size=256, intermediate_size=1024,
                         num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=256, tie_word_embeddings=True)
    tiny = LlamaForCausalLM(config).float().train()
    if wanted("tiny-full/8x(32+96)"):
        bench("tiny-full/8x(32+96)", tiny, make_batch(8, 32, 96, 8192), 32, args.repeats)
    batch = make_batch(4, 32, 64, vocab)
    if wanted("smollm2-lora16/4x(32+64)"):
        bench("smollm2-lora16/4x(32+64)", add_lora(load()), batch, 32, args.repeats)
    if wanted("smollm2-full/4x(32+64)"):
        bench("smollm2-full/4x(32+64)", load(), batch, 32, args.repeats)


if __name__ == "__main__":
    main()
