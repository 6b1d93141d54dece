#!/usr/bin/env python3
"""Reference side of bpo's parity test with transformers (crates/model/tests/transformers_parity.rs).

  transformers_parity.py build OUT   random tiny models, one per row (an architecture, or one
                                     with an option such as a sliding window), saved under
                                     OUT/<directory>, and OUT/reference.json: per-token log-probs of
                                     a fixed token sequence and greedy `generate` tokens
  transformers_parity.py check OUT   loads bpo's exports OUT/export/<directory> with
                                     transformers and prints, per row, the largest log-prob
                                     difference to the reference (JSON)

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

WINDOW = 8  # shorter than the prompt plus the greedy tokens, and than the scored sequence
GEMMA_ROPE = {"full_attention": {"rope_type": "default", "rope_theta": 10000.0},
              "sliding_attention": {"rope_type": "default", "rope_theta": 100.0}}

# row name -> (config class, model class, options)
ARCHITECTURES = {
    "llama": (t.LlamaConfig, t.LlamaForCausalLM, dict(LLAMA_LIKE)),
    "mistral": (t.MistralConfig, t.MistralForCausalLM, dict(LLAMA_LIKE, sliding_window=WINDOW)),
    "qwen2": (t.Qwen2Config, t.Qwen2ForCausalLM, dict(LLAMA_LIKE)),
    "qwen2 (sliding window from layer 1)": (
        t.Qwen2Config, t.Qwen2ForCausalLM,
        dict(LLAMA_LIKE, use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1)),
    "qwen3": (t.Qwen3Config, t.Qwen3ForCausalLM, dict(LLAMA_LIKE, head_dim=24)),
    # 4 query heads, 2 key/value heads: the fused q/k/v projection splits unevenly.
    "phi3": (t.Phi3Config, t.Phi3ForCausalLM, dict(LLAMA_LIKE, sliding_window=WINDOW)),
    "gemma3_text": (
        t.Gemma3TextConfig, t.Gemma3ForCausalLM,
        dict({k: v for k, v in LLAMA_LIKE.items() if k != "rope_theta"}, head_dim=24,
             sliding_window=WINDOW, query_pre_attn_scalar=20, rope_parameters=GEMMA_ROPE,
             layer_types=["sliding_attention", "full_attention", "sliding_attention"],
             tie_word_embeddings=True)),
    "gpt2": (t.GPT2Config, t.GPT2LMHeadModel,
             dict(n_embd=64, n_layer=3, n_head=4, n_positions=64, vocab_size=VOCAB,
                  bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=True)),
}


def directory(name):
    """The directory of a row's model: its name without spaces or parentheses."""
    return "".join(c if c.isalnum() or c == "_" else "-" for c in name).strip("-")


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
        model.save_pretrained(f"{out}/{directory(name)}")
        with torch.no_grad():
            greedy = model.generate(torch.tensor([ids[:PROMPT]]), max_new_tokens=NEW,
                                    min_new_tokens=NEW, do_sample=False, eos_token_id=None,
                                    pad_token_id=0)[0, PROMPT:].tolist()
        reference["architectures"][name] = {
            "directory": directory(name),
            "model_type": model.config.model_type,
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
        model = t.AutoModelForCausalLM.from_pretrained(f"{out}/export/{directory(name)}",
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
