#!/usr/bin/env python3
"""Reference side of the parity test of bpo's Gemma 3 GGUF loader.

  gemma3_gguf.py build OUT   a random tiny Gemma 3 text model and a tiny Gemma-style sentencepiece
                             vocabulary, written as OUT/gemma3.gguf the way llama.cpp's
                             convert_hf_to_gguf.py (Gemma3Model, --outtype f32) writes them; the
                             original model under OUT/hf (with the tokenizer transformers builds
                             from the GGUF); and OUT/reference.json: per-token log-probs of a fixed
                             token sequence, greedy `generate` tokens, and the ids and decodings of
                             a few texts by the tokenizer transformers builds from the GGUF

The script checks its own output: transformers loads OUT/gemma3.gguf and must give the original's
log-probs (within 1e-5) and greedy tokens. Every parameter, norms included, is random (seeded), so a
weight under the wrong name or a norm without its offset changes the numbers.

Followed: llama.cpp 0024aa7417efd50a7c2a79e049dfbbbceb0beaaf convert_hf_to_gguf.py
(TextModel.set_gguf_parameters, Gemma3Model, _set_vocab_sentencepiece) and src/llama-model.cpp
(LLM_ARCH_GEMMA3 hparams); transformers 5.24 (modeling_gguf_pytorch_utils.load_gguf_checkpoint,
integrations/ggml.py GGUF_CONFIG_MAPPING["gemma3"], integrations/gguf/gguf_tokenizer_mapping.py).
What a gemma3 GGUF does not carry fixes three choices, so that both readers rebuild this model:
- attention scale: llama.cpp uses 1/sqrt(key_length) (1/sqrt(n_embd/n_head) for 62 layers only) and
  writes no query_pre_attn_scalar; transformers leaves it at 256. So head_dim = scalar = 256.
- layer pattern: llama.cpp takes 6 (5 sliding, then 1 full) unless the optional
  gemma3.attention.sliding_window_pattern says otherwise, which the converter does not write;
  transformers' default is the same 6. So 6 layers, the last one full attention.
- local rope base: the converter writes gemma3.rope.freq_base_swa; llama.cpp's loader before it read
  that key, and transformers, use 10000. So 10000 (gemma3.rope.freq_base, global, is read by both).
transformers' tokenizer respells the user-defined runs of spaces ("  ") as "▁▁" and derives the
merges from the vocabulary in file order (gguf_tokenizer_mapping.gemma_tokenizer); the normal pieces
here are scored in that order too, so llama.cpp, which merges by score, would agree.

Run: $HOME/.cache/bpo-ci/venv/bin/python scripts/gemma3_gguf.py build OUT   (about 10 s on a CPU)
"""
import json
import sys
from pathlib import Path

import gguf
import torch
import transformers as t
from safetensors import safe_open

LLAMA_CPP_COMMIT = "0024aa7417efd50a7c2a79e049dfbbbceb0beaaf"
ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "crates/model/tests/fixtures/chat_templates/gemma3.jinja"  # Gemma 3's own
ARCH = "gemma3"
SEQ, PROMPT, NEW, WINDOW = 32, 8, 12, 8  # the sequence and prompt + greedy tokens outrun the window
LOCAL_THETA, GLOBAL_THETA = 10_000.0, 1_000_000.0

# Token types (gguf.TokenType, llama.cpp's SentencePieceTokenTypes).
NORMAL, CONTROL, USER_DEFINED, BYTE = 1, 3, 4, 6
# The converter reads tokenizer.model, then tokenizer_config.json's added_tokens_decoder: entries
# marked special (Gemma 3 marks <pad> <eos> <bos> <unk> <mask> and the turn markers) become CONTROL,
# the others (Gemma's runs of spaces) USER_DEFINED with "▁" written as " "; both get score -1000.
# (Without a <mask>, transformers' GemmaTokenizer would add one past the model's vocabulary.)
SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"]
SPACES = ["  ", "   "]
CHARS = list("▁etaoinsrhldcuwygmpfbkvTHWI.,!'")  # no q, x, é, digits: those fall back to bytes
MERGED = ("▁t he ▁the in er an on re ▁a at en ▁w ▁c ▁s ed ing ▁o ll ▁h ▁he ▁hell ▁hello or "
          "▁wor ld ▁world ▁i ▁is ▁an ▁and ▁ca ▁cat ▁m ▁ma ▁mat ▁sa ▁sat ▁l ▁li ▁lin ▁line ou ▁y "
          "▁you ▁b ▁br ow own ▁brown ▁f ▁fo ic ck ick ▁T ▁The").split()  # each after its parts
BOS, EOS, UNK, PAD = 2, 1, 3, 0

TEXTS = [
    "Hello world",
    "the cat sat on the mat.",
    " the brown fox",
    "The  quick   brown fox",
    "café au lait, naïve",
    "I love 🦙 and 🚀!",
    "line one\nline two\n",
    "<start_of_turn>user\nhi<end_of_turn>\n",
    "hello<eos>world",
    "you and you and the world 123",
]


def vocabulary():
    """(tokens, scores, types) in file order. Normal pieces are scored best-first in file order,
    so llama.cpp (which merges by score) and transformers (by position) agree."""
    tokens = SPECIAL + SPACES + [f"<0x{b:02X}>" for b in range(256)] + CHARS + MERGED
    scores = [-1000.0] * (len(SPECIAL) + len(SPACES)) + [0.0] * 256
    scores += [-0.37 * (k + 1) for k in range(len(CHARS) + len(MERGED))]
    types = [CONTROL] * len(SPECIAL) + [USER_DEFINED] * len(SPACES) + [BYTE] * 256
    types += [NORMAL] * (len(CHARS) + len(MERGED))
    assert len(set(tokens)) == len(tokens)
    return tokens, scores, types


def build_model(vocab_size):
    config = t.Gemma3TextConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=6,
        num_attention_heads=4, num_key_value_heads=2, head_dim=256, query_pre_attn_scalar=256,
        sliding_window=WINDOW, max_position_embeddings=128, rms_norm_eps=1e-6,
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": GLOBAL_THETA},
                         "sliding_attention": {"rope_type": "default", "rope_theta": LOCAL_THETA}},
        tie_word_embeddings=True, pad_token_id=PAD, eos_token_id=EOS, bos_token_id=BOS)
    model = t.Gemma3ForCausalLM(config).float().eval()
    # Norms scale by (1 + w); a small tied embedding keeps greedy decoding from looping.
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0.0, 0.05 if "embed" in name else 0.5 if p.dim() == 1 else 0.15)
    return model


def write_gguf(path, hf_dir, config, vocab):
    """What `convert_hf_to_gguf.py hf_dir --outtype f32` writes, in its order."""
    w = gguf.GGUFWriter(path, ARCH)  # general.architecture
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GEMMA3, config.num_hidden_layers)
    with safe_open(hf_dir / "model.safetensors", "pt") as f:  # tied: there is no lm_head.weight
        for key in f.keys():
            data = f.get_tensor(key).float()
            if key.endswith("norm.weight"):
                data = data + 1.0  # Gemma3Model.norm_shift: Gemma3RMSNorm computes x * (1 + w)
            w.add_tensor(names.get_name(key, try_suffixes=(".weight", ".bias")), data.numpy())
    # ModelBase.prepare_metadata: general.type, general.name/size_label, then the parameters.
    w.add_type(gguf.GGUFType.MODEL)
    total, shared, expert, experts = w.get_total_parameter_count()
    meta = gguf.Metadata.load(None, hf_dir, None, total)
    meta.name = meta.name or hf_dir.name
    meta.size_label = meta.size_label or gguf.size_label(total, shared, expert, experts)
    meta.set_gguf_meta_model(w)
    # TextModel.set_gguf_parameters; Gemma3Model rewrites several with the same values and adds
    # the sliding window (written unless the config says sliding_window_pattern == 1).
    w.add_block_count(config.num_hidden_layers)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(config.num_attention_heads)
    w.add_head_count_kv(config.num_key_value_heads)
    w.add_rope_freq_base(config.rope_parameters["full_attention"]["rope_theta"])
    # gguf-py 0.17 has no add_rope_freq_base_swa; llama.cpp's Keys.Rope.FREQ_BASE_SWA
    w.add_float32(f"{ARCH}.rope.freq_base_swa",
                  config.rope_parameters["sliding_attention"]["rope_theta"])
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    w.add_key_length(config.head_dim)
    w.add_value_length(config.head_dim)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_sliding_window(config.sliding_window)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    # TextModel.set_vocab -> Gemma3Model.set_vocab -> _set_vocab_sentencepiece + SpecialVocab
    tokens, scores, types = vocab
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(BOS)
    w.add_eos_token_id(EOS)
    w.add_unk_token_id(UNK)
    w.add_pad_token_id(PAD)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(TEMPLATE.read_text(encoding="utf-8"))
    w.add_add_space_prefix(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def token_logprobs(model, ids):
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    lp = torch.log_softmax(logits, -1)
    return [lp[i - 1, ids[i]].item() for i in range(1, len(ids))]


def greedy(model, prompt):
    """The greedy tokens, and the smallest gap between the best and second-best logit on the way."""
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=NEW, min_new_tokens=NEW,
                             do_sample=False, eos_token_id=None, pad_token_id=PAD)
        top2 = model(out).logits[0, len(prompt) - 1:-1].topk(2).values
    return out[0, len(prompt):].tolist(), (top2[:, 0] - top2[:, 1]).min().item()


def build(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab = vocabulary()
    torch.manual_seed(0)
    ids = torch.randint(4, len(vocab[0]), (SEQ,)).tolist()
    model = build_model(len(vocab[0]))
    model.save_pretrained(out / "hf")
    write_gguf(out / "gemma3.gguf", out / "hf", model.config, vocab)
    logprobs, (tokens, gap) = token_logprobs(model, ids), greedy(model, ids[:PROMPT])
    assert gap > 1e-3, f"greedy top-2 logit gap {gap}: too close for a float-order-robust test"

    # What transformers rebuilds from the GGUF computes what the original does.
    loaded = t.AutoModelForCausalLM.from_pretrained(str(out), gguf_file="gemma3.gguf",
                                                    dtype=torch.float32).eval()
    c = loaded.config
    assert type(loaded) is t.Gemma3ForCausalLM, type(loaded)
    got = (c.layer_types, c.sliding_window, c.query_pre_attn_scalar, c.head_dim, c.rope_parameters)
    assert got == (model.config.layer_types, WINDOW, 256, 256, model.config.rope_parameters), got
    diff = max(abs(a - b) for a, b in zip(token_logprobs(loaded, ids), logprobs))
    assert diff < 1e-5, f"log-probs differ by {diff}"
    assert greedy(loaded, ids[:PROMPT])[0] == tokens

    tok = t.AutoTokenizer.from_pretrained(str(out), gguf_file="gemma3.gguf")
    tok.save_pretrained(out / "hf")
    texts = []
    for text in TEXTS:
        plain = tok(text, add_special_tokens=False)["input_ids"]
        special = tok(text, add_special_tokens=True)["input_ids"]
        assert special == [BOS] + plain and tok.decode(plain) == text, (text, plain)
        texts.append({"text": text, "ids": plain, "ids_with_special": special,
                      "decoded": tok.decode(plain), "decoded_with_special": tok.decode(special)})
    used = {i for entry in texts for i in entry["ids"]}
    pieces, _, types = vocab
    for kind, hit in (("byte fallback", lambda i: types[i] == BYTE),
                      ("a merge", lambda i: types[i] == NORMAL and len(pieces[i]) > 1),
                      ("a control token", lambda i: types[i] == CONTROL),
                      ("a run of spaces", lambda i: types[i] == USER_DEFINED)):
        assert any(map(hit, used)), f"no text exercises {kind}"

    reference = {
        "llama_cpp_commit": LLAMA_CPP_COMMIT, "transformers": t.__version__, "gguf": "gemma3.gguf",
        "hf": "hf", "vocab_size": len(vocab[0]), "ids": ids, "prompt": ids[:PROMPT],
        "logprobs": logprobs, "greedy": tokens, "greedy_min_logit_gap": gap,
        "gguf_reload_max_logprob_diff": diff,
        "tokenizer": texts,
    }
    with open(out / "reference.json", "w", encoding="utf-8") as f:
        json.dump(reference, f, ensure_ascii=False, indent=1)
    print(f"wrote {out}: vocab {len(vocab[0])}, GGUF reload log-prob diff {diff:.2e}")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "build":
        raise SystemExit(__doc__)
    build(sys.argv[2])
