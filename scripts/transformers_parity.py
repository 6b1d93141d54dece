#!/usr/bin/env python3
"""Reference side of bpo's parity test with transformers (crates/model/tests/transformers_parity.rs).

  transformers_parity.py build OUT   random tiny models, one per architecture, saved under
                                     OUT/<arch>, and OUT/reference.json: per-token log-probs of a
                                     fixed token sequence and greedy `generate` tokens
  transformers_parity.py check OUT   loads bpo's exports OUT/export/<arch> with transformers and
                                     prints, per architecture, the largest log-prob difference to
                                     the reference (JSON)

Every parameter, norms included, is drawn at random (seeded), so a weight loaded under the wrong
name changes the numbers.
"""
import json
import sys

import torch
import transformers as t

VOCAB = 300
SEQ = 40
PROMPT = 8
NEW = 12

COMMON = dict(vocab_size=VOCAB, max_position_embeddings=64, tie_word_embeddings=False,
              bos_token_id=1, eos_token_id=2, pad_token_id=0)
LLAMA_LIKE = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
                  rope_theta=10000.0, **COMMON)

# architecture -> (config class, model class, options)
ARCHITECTURES = {
    "llama": (t.LlamaConfig, t.LlamaForCausalLM, dict(LLAMA_LIKE)),
    "qwen2": (t.Qwen2Config, t.Qwen2ForCausalLM, dict(LLAMA_LIKE)),
    "qwen3": (t.Qwen3Config, t.Qwen3ForCausalLM, dict(LLAMA_LIKE, head_dim=24)),
    "gpt2": (t.GPT2Config, t.GPT2LMHeadModel,
             dict(n_embd=64, n_layer=3, n_head=4, n_positions=64, vocab_size=VOCAB,
                  bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=True)),
}


def token_logprobs(model, ids):
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    lp = torch.log_softmax(logits, -1)
    return [lp[i - 1, ids[i]].item() for i in range(1, len(ids))]


def build(out):
    torch.manual_seed(0)
    ids = torch.randint(3, VOCAB, (SEQ,)).tolist()
    reference = {"ids": ids, "prompt": ids[:PROMPT], "architectures": {}}
    for i, (name, (config_class, model_class, options)) in enumerate(ARCHITECTURES.items()):
        torch.manual_seed(100 + i)
        model = model_class(config_class(**options)).float().eval()
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() == 1:
                    p.copy_(1.0 + 0.3 * torch.randn_like(p))
                else:
                    p.normal_(0.0, 0.15)
        model.save_pretrained(f"{out}/{name}")
        with torch.no_grad():
            greedy = model.generate(torch.tensor([ids[:PROMPT]]), max_new_tokens=NEW,
                                    min_new_tokens=NEW, do_sample=False, eos_token_id=None,
                                    pad_token_id=0)[0, PROMPT:].tolist()
        reference["architectures"][name] = {
            "class": model_class.__name__,
            "logprobs": token_logprobs(model, ids),
            "greedy": greedy,
        }
    with open(f"{out}/reference.json", "w") as f:
        json.dump(reference, f)


def check(out):
    with open(f"{out}/reference.json") as f:
        reference = json.load(f)
    result = {}
    for name, expected in reference["architectures"].items():
        model = t.AutoModelForCausalLM.from_pretrained(f"{out}/export/{name}",
                                                       dtype=torch.float32).eval()
        if type(model).__name__ != expected["class"]:
            raise SystemExit(f"{name}: transformers loaded {type(model).__name__}")
        got = token_logprobs(model, reference["ids"])
        result[name] = max(abs(a - b) for a, b in zip(got, expected["logprobs"]))
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("build", "check"):
        raise SystemExit(__doc__)
    (build if sys.argv[1] == "build" else check)(sys.argv[2])
