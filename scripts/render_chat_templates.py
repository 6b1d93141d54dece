#!/usr/bin/env python3
"""Renders every chat template x conversation of a fixture directory with transformers, the way
`tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=...)` renders them
(its own Jinja environment, the special tokens and the fixture's extra keywords), and prints the
results as JSON: {template: {case: {"text": ...} | {"error": message}}}.

    python scripts/render_chat_templates.py crates/model/tests/fixtures/chat_templates > expected.json

crates/model/tests/chat_templates.rs compares bpo's renderings with the committed expected.json;
.ci/run regenerates it here and fails when it differs from the committed file.
"""

import json
import os
import sys

from transformers.utils.chat_template_utils import render_jinja_template


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    fixture = sys.argv[1]
    with open(os.path.join(fixture, "cases.json"), encoding="utf-8") as f:
        spec = json.load(f)
    out = {}
    for template in spec["templates"]:
        with open(os.path.join(fixture, template["file"]), encoding="utf-8") as f:
            source = f.read()
        tokens = {k: template[k] for k in ("bos_token", "eos_token") if template.get(k) is not None}
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
                rendered[case["name"]] = {"text": texts[0]}
            except Exception as e:  # a template's raise_exception, or a Jinja error
                rendered[case["name"]] = {"error": str(e)}
        out[template["name"]] = rendered
    json.dump(out, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
