#!/usr/bin/env python3
"""Renders every chat template x conversation of a fixture directory with transformers, the way
`tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=...)` renders them
(its own Jinja environment, the special tokens and the fixture's extra keywords), tokenises them
as `apply_chat_template(..., tokenize=True)` does with a tokenizer built here per template (byte-
level, a few fixed merges, the template's special tokens matched whole, its model's other added
tokens, BOS added by the tokenizer where `adds_bos` says so), and prints the results as JSON:
{"renderings": {template: {case: {"text": ..., "ids": [...]} | {"error": message}}},
 "tokenizers": {template: <its tokenizer.json>}}.

    python scripts/render_chat_templates.py crates/model/tests/fixtures/chat_templates > expected.json

crates/model/tests/chat_templates.rs compares bpo's renderings with the committed expected.json;
.ci/run regenerates it here and fails when it differs from the committed file.
"""

import json
import os
import sys

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast
from transformers.utils.chat_template_utils import render_jinja_template

# Merges every template's tokenizer shares, so that words are not only single bytes.
MERGES = [("h", "e"), ("\u0120", "t"), ("\u0120t", "he"), ("i", "n"), ("e", "r"), ("a", "n"),
          ("o", "u"), ("\u0120", "a"), ("r", "e"), ("\u0120", "w")]


def tokenizer(template, source):
    """The template's tokenizer (see the module's docstring) and its tokenizer.json."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    for left, right in MERGES:
        vocab[left + right] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=MERGES))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in template["special_tokens"]])
    backend.add_tokens(
        [AddedToken(t, special=False, normalized=False) for t in template["added_tokens"]])
    bos = template.get("bos_token")
    if template["adds_bos"]:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, backend.token_to_id(bos))])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos,
                                  eos_token=template.get("eos_token"))
    tok.chat_template = source
    return tok, json.loads(backend.to_str())


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    fixture = sys.argv[1]
    with open(os.path.join(fixture, "cases.json"), encoding="utf-8") as f:
        spec = json.load(f)
    out, tokenizers = {}, {}
    for template in spec["templates"]:
        with open(os.path.join(fixture, template["file"]), encoding="utf-8") as f:
            source = f.read()
        tokens = {k: template[k] for k in ("bos_token", "eos_token") if template.get(k) is not None}
        tok, tokenizers[template["name"]] = tokenizer(template, source)
        rendered = {}
        for case in spec["cases"]:
            try:
                texts, _ = render_jinja_template(
                    conversations=[case["messages"]],
                    chat_template=source,
                    add_generation_prompt=case["add_generation_prompt"],
                    **tokens,
                    **spec["extra"],
                )
                ids = tok.apply_chat_template(
                    case["messages"], tokenize=True, return_dict=False,
                    add_generation_prompt=case["add_generation_prompt"], **spec["extra"])
                rendered[case["name"]] = {"text": texts[0], "ids": ids}
            except Exception as e:  # a template's raise_exception, or a Jinja error
                rendered[case["name"]] = {"error": str(e)}
        out[template["name"]] = rendered
    json.dump({"renderings": out, "tokenizers": tokenizers}, sys.stdout, indent=1,
              ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
