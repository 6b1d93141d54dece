"""What bf16 matrix products would do to a LoRA DPO step, emulated in PyTorch: the frozen
weights' products take inputs rounded to bf16 and sum in f32 (what AVX512-BF16's VDPBF16PS
computes; a product of two bf16 values is exact in f32), against the same step in f32.

    PYTHON benches/compare/bf16_error.py GGUF

SmolLM2-135M-Instruct from GGUF with LoRA r16 on every linear layer (`dpo_step.py`'s), its B
drawn small (std 0.002) so that the adapter is near its start but not zero; pairs cut from the
Brown-corpus text of `data/sentiment/dev.jsonl` (shared prompt, two different continuations);
the reference log-probs are the f32 policy's, so the f32 loss is log 2. Prints, per shape, each
sequence's response log-prob difference (also divided by the response's length), the DPO loss (beta 0.1) and how the LoRA gradient moves
(cosine and relative error of the whole gradient vector), for the linear layers in bf16 and for
those and the output head.
"""
import json
import os
import sys

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dpo_step import add_lora  # noqa: E402

MODE = {"bf16": False, "head": False, "head_weight": None}
plain_linear = F.linear


def rounded(x):
    return x.to(torch.bfloat16).to(torch.float32)


def linear(x, weight, bias=None):
    """F.linear with bf16-rounded inputs for frozen weights (and the head only when asked)."""
    if MODE["bf16"] and not weight.requires_grad and (MODE["head"] or weight is not MODE["head_weight"]):
        return plain_linear(rounded(x), rounded(weight), bias)
    return plain_linear(x, weight, bias)


def main():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    path = sys.argv[1]
    folder, name = os.path.dirname(path), os.path.basename(path)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32)
    model = add_lora(model)
    for module in model.modules():
        if hasattr(module, "b"):
            torch.nn.init.normal_(module.b, std=0.002)
    MODE["head_weight"] = model.get_output_embeddings().weight
    F.linear = linear
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../..")
    rows = [json.loads(line) for line in open(os.path.join(root, "data/sentiment/dev.jsonl"))]
    ids = tokenizer(" ".join(r["prompt"] + r["reference"] for r in rows))["input_ids"]
    params = [p for p in model.parameters() if p.requires_grad]

    def logps(batch, prompt):
        logits = model(input_ids=batch).logits[:, prompt - 1 : -1]
        picked = torch.gather(torch.log_softmax(logits, -1), 2, batch[:, prompt:].unsqueeze(-1))
        return picked.squeeze(-1).sum(-1)

    for n, prompt, response in [(4, 64, 64), (2, 256, 256), (1, 1024, 1024)]:
        chosen, rejected, at = [], [], 0
        for _ in range(n):
            p = ids[at : at + prompt]
            chosen.append(p + ids[at + prompt : at + prompt + response])
            rejected.append(p + ids[at + prompt + response : at + prompt + 2 * response])
            at += prompt + 2 * response
        batch = torch.tensor(chosen + rejected)
        runs = {}
        for mode in ["f32", "bf16", "bf16+head"]:
            MODE["bf16"], MODE["head"] = mode != "f32", mode == "bf16+head"
            model.zero_grad()
            lp = logps(batch, prompt)
            if mode == "f32":
                reference = lp.detach()
            h = (lp[:n] - reference[:n]) - (lp[n:] - reference[n:])
            loss = -F.logsigmoid(0.1 * h).mean()
            loss.backward()
            grad = torch.cat([p.grad.flatten() for p in params if p.grad is not None]).double()
            runs[mode] = (lp.detach(), loss.item(), grad)
        lp32, loss32, grad32 = runs["f32"]
        for mode in ["bf16", "bf16+head"]:
            lp, loss, grad = runs[mode]
            diff = (lp - lp32).abs()
            cosine = F.cosine_similarity(grad, grad32, dim=0).item()
            error = ((grad - grad32).norm() / grad32.norm()).item()
            print(f"{n}x({prompt}+{response}) {mode:9s} response log-prob {lp32.mean():9.2f}: "
                  f"|bf16 - f32| mean {diff.mean():.4f} max {diff.max():.4f} "
                  f"(per response token at most {(diff / response).max():.1e}); loss {loss32:.6f} -> {loss:.6f}; "
                  f"LoRA gradient cosine {cosine:.5f}, relative error {error:.1e}")


if __name__ == "__main__":
    main()
