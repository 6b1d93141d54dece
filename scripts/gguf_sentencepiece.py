#!/usr/bin/env python3
"""Reference side of the test of bpo's SentencePiece tokenizers from GGUF for Llama-family and
Phi-3 files (crates/model/tests/gguf_sentencepiece.rs; Gemma's is in scripts/gemma3_gguf.py).

  gguf_sentencepiece.py build OUT   writes OUT/llama.gguf and OUT/phi3.gguf: a tiny
                                    SentencePiece vocabulary in the layout llama.cpp's converter
                                    writes for Llama 2 / Mistral / Phi-3 (`<unk>`, `<s>`, `</s>`,
                                    the 256 byte tokens, pieces with scores, a control and a
                                    user-defined token; tokenizer.ggml.model = "llama"), the
                                    architecture's size keys and no tensors; and OUT/reference.json:
                                    per file, the tokenizer transformers builds from it
                                    (tokenizer.json) and its ids (with and without special tokens)
                                    and decodings of a few texts

The pieces' scores are not in file order, so merging by score (what transformers does for these
families, and llama.cpp) differs from merging by position (Gemma).

Run: $HOME/.cache/bpo-ci/venv/bin/python scripts/gguf_sentencepiece.py build OUT   (a few seconds)
"""
import json
import sys
from pathlib import Path

import gguf
import transformers as t

UNKNOWN, NORMAL, CONTROL, USER_DEFINED, BYTE = 2, 1, 3, 4, 6
PIECES = list("▁etaohnsliwrd") + ["he", "▁t", "▁the", "ll", "hel", "▁hel", "▁hell", "▁hello",
                                   "▁a", "in", "▁w", "or", "▁wor", "ld", "▁world", "▁▁", "er"]
TEXTS = ["hello the world", " hello", "hello  there\n", "Hi <|end|> there<|user|>x",
         "naïve café 🦙", "the  the   the", ""]


def vocabulary():
    """(tokens, scores, types): Llama's layout; piece k scored by a fixed shuffle of k."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    scores = [0.0] * len(tokens)
    types = [UNKNOWN, CONTROL, CONTROL] + [BYTE] * 256
    for k, piece in enumerate(PIECES):
        tokens.append(piece)
        scores.append(-float((k * 7) % len(PIECES)))
        types.append(NORMAL)
    tokens += ["<|end|>", "<|user|>"]
    scores += [0.0, 0.0]
    types += [CONTROL, USER_DEFINED]
    return tokens, scores, types


def write(path, arch, vocab):
    w = gguf.GGUFWriter(path, arch)
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_feed_forward_length(16)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    tokens, scores, types = vocab
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def build(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab = vocabulary()
    reference = {"transformers": t.__version__}
    for arch in ("llama", "phi3"):
        write(out / f"{arch}.gguf", arch, vocab)
        tok = t.AutoTokenizer.from_pretrained(str(out), gguf_file=f"{arch}.gguf")
        texts = []
        for text in TEXTS:
            plain = tok(text, add_special_tokens=False)["input_ids"]
            special = tok(text, add_special_tokens=True)["input_ids"]
            texts.append({"text": text, "ids": plain, "ids_with_special": special,
                          "decoded": tok.decode(plain), "decoded_with_special": tok.decode(special)})
        reference[arch] = {"gguf": f"{arch}.gguf", "texts": texts,
                           "tokenizer": json.loads(tok.backend_tokenizer.to_str())}
    with open(out / "reference.json", "w", encoding="utf-8") as f:
        json.dump(reference, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "build":
        raise SystemExit(__doc__)
    build(sys.argv[2])
