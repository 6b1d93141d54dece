#!/usr/bin/env python3
"""Reference side of bpo's reward-model parity test with transformers
(crates/algos/tests/reward_parity.rs).

  reward_parity.py build OUT        random tiny sequence classifiers (one label), one per
                                    architecture, saved under OUT/<arch>, and OUT/reference.json:
                                    token sequences of different lengths and their rewards in one
                                    right-padded and one left-padded batch
  reward_parity.py score DIR IDS    loads DIR (a reward model bpo wrote) with transformers'
                                    AutoModelForSequenceClassification and prints the rewards of
                                    the sequences in the JSON file IDS, one batch, right-padded

Every parameter, norms included, is drawn at random (seeded), so a weight loaded under the wrong
name changes the numbers.
"""
import json
import sys

import torch
import transformers as t

VOCAB = 300
PAD = 0
LENGTHS = [5, 17, 11, 30]

COMMON = dict(vocab_size=VOCAB, max_position_embeddings=64, bos_token_id=1, eos_token_id=2,
              pad_token_id=PAD, num_labels=1)
LLAMA_LIKE = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
                  rope_theta=10000.0, **COMMON)
WINDOW = 8

ARCHITECTURES = {
    "llama": (t.LlamaConfig, t.LlamaForSequenceClassification, dict(LLAMA_LIKE)),
    "mistral": (t.MistralConfig, t.MistralForSequenceClassification,
                dict(LLAMA_LIKE, sliding_window=WINDOW)),
    "qwen2": (t.Qwen2Config, t.Qwen2ForSequenceClassification, dict(LLAMA_LIKE)),
    "qwen3": (t.Qwen3Config, t.Qwen3ForSequenceClassification, dict(LLAMA_LIKE, head_dim=24)),
    "phi3": (t.Phi3Config, t.Phi3ForSequenceClassification,
             dict(LLAMA_LIKE, sliding_window=WINDOW)),
    "gemma3_text": (
        t.Gemma3TextConfig, t.Gemma3TextForSequenceClassification,
        dict({k: v for k, v in LLAMA_LIKE.items() if k != "rope_theta"}, head_dim=24,
             sliding_window=WINDOW, query_pre_attn_scalar=20,
             layer_types=["sliding_attention", "full_attention", "sliding_attention"])),
    "gpt2": (t.GPT2Config, t.GPT2ForSequenceClassification,
             dict(n_embd=64, n_layer=3, n_head=4, n_positions=64, **COMMON)),
}


def rewards(model, sequences, side):
    """Rewards of `sequences` in one batch padded with the model's pad id on `side`."""
    pad = model.config.pad_token_id
    width = max(len(s) for s in sequences)
    rows = [s + [pad] * (width - len(s)) if side == "right" else [pad] * (width - len(s)) + s
            for s in sequences]
    mask = [[int(i < len(s)) if side == "right" else int(i >= width - len(s))
             for i in range(width)] for s in sequences]
    with torch.no_grad():
        out = model(input_ids=torch.tensor(rows), attention_mask=torch.tensor(mask)).logits
    return out[:, 0].double().tolist()


def build(out):
    torch.manual_seed(0)
    sequences = [torch.randint(3, VOCAB, (n,)).tolist() for n in LENGTHS]
    reference = {"sequences": sequences, "architectures": {}}
    for i, (name, (config_class, model_class, options)) in enumerate(ARCHITECTURES.items()):
        torch.manual_seed(200 + i)
        model = model_class(config_class(**options)).float().eval()
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() == 1:
                    p.copy_(1.0 + 0.3 * torch.randn_like(p))
                else:
                    p.normal_(0.0, 0.15)
        model.save_pretrained(f"{out}/{name}")
        reference["architectures"][name] = {
            "class": model_class.__name__,
            "right": rewards(model, sequences, "right"),
            "left": rewards(model, sequences, "left"),
        }
    with open(f"{out}/reference.json", "w") as f:
        json.dump(reference, f)


def score(directory, ids_path):
    with open(ids_path) as f:
        sequences = json.load(f)
    model = t.AutoModelForSequenceClassification.from_pretrained(directory,
                                                                 dtype=torch.float32).eval()
    print(json.dumps({"class": type(model).__name__,
                      "rewards": rewards(model, sequences, "right")}))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "build":
        build(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "score":
        score(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(__doc__)
