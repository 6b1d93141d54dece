"""Writes the Parquet fixtures of crates/data/tests/parquet.rs: each case as pyarrow writes it
(`pyarrow.parquet.write_table`), as `datasets` writes it (`Dataset.to_parquet`), and as the
equivalent JSONL; plus error cases (a null, a wrong type, a missing column, a message without
content) written by pyarrow.

    python scripts/write_parquet_fixtures.py crates/data/tests/fixtures/parquet

CI reruns it into a temporary directory with the pinned venv and runs the test on that
(BPO_PARQUET_FIXTURES), so the committed files are what the current libraries write.
"""

import json
import os
import sys

import datasets
import pyarrow as pa
import pyarrow.parquet as pq


def msgs(*pairs):
    return [{"role": role, "content": content} for role, content in pairs]


CASES = {
    # TRL's standard form, with columns bpo ignores and a `meta` struct.
    "pairs_standard": [
        {"prompt": "The movie was", "chosen": " wonderful.", "rejected": " dull.", "id": 1,
         "score_chosen": 8.5, "meta": {"chosen_score": 0.8, "rejected_score": -0.4}},
        {"prompt": "Dinner tonight", "chosen": " was lovely.", "rejected": " was burnt.", "id": 2,
         "score_chosen": 7.0, "meta": {"chosen_score": 0.5, "rejected_score": None}},
        {"prompt": "Ünïcödé ✓", "chosen": " 日本語", "rejected": " emoji 🎉", "id": 3,
         "score_chosen": 1.0, "meta": None},
    ],
    # TRL's conversational form (lists of {role, content} structs); a null prompt means the
    # prompt is the messages chosen and rejected share.
    "pairs_conversational": [
        {"prompt": msgs(("system", "Be brief."), ("user", "Sky colour?")),
         "chosen": msgs(("assistant", "Blue.")), "rejected": msgs(("assistant", "Green."))},
        {"prompt": None,
         "chosen": msgs(("user", "Say hi."), ("assistant", "Hi!")),
         "rejected": msgs(("user", "Say hi."), ("assistant", "No."))},
    ],
    # Implicit prompt: chosen and rejected only.
    "pairs_implicit": [
        {"chosen": "The sky is blue.", "rejected": "The sky is green."},
        {"chosen": "Cats purr when happy.", "rejected": "Cats bark when happy."},
    ],
    # Prompt-only, with optional references and metadata.
    "prompts": [
        {"prompt": "The old house", "reference": " stood alone.", "meta": {"genre": "fiction"}},
        {"prompt": "She opened the letter", "reference": None, "meta": {"genre": "news"}},
    ],
    "prompts_conversational": [
        {"prompt": msgs(("user", "Tell me a joke."))},
        {"prompt": msgs(("system", "Rhyme."), ("user", "A cat?"))},
    ],
}

# Error cases: (rows, explicit schema or None).
ERRORS = {
    "error_null": ([
        {"prompt": "a", "chosen": " b", "rejected": " c"},
        {"prompt": "d", "chosen": " e", "rejected": " f"},
        {"prompt": "g", "chosen": None, "rejected": " h"},
    ], None),
    "error_type": ([{"prompt": "a", "chosen": 3, "rejected": " c"}], None),
    "error_missing_column": ([{"prompt": "a", "chosen": " b"}], None),
    "error_message": (
        [{"prompt": "a", "chosen": [{"role": "assistant"}], "rejected": msgs(("assistant", "x"))}],
        pa.schema([
            ("prompt", pa.string()),
            ("chosen", pa.list_(pa.struct([("role", pa.string())]))),
            ("rejected", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ]),
    ),
}


def main(out):
    os.makedirs(out, exist_ok=True)
    for name, rows in CASES.items():
        with open(os.path.join(out, f"{name}.jsonl"), "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        pq.write_table(pa.Table.from_pylist(rows), os.path.join(out, f"{name}.pyarrow.parquet"))
        datasets.Dataset.from_list(rows).to_parquet(os.path.join(out, f"{name}.datasets.parquet"))
    for name, (rows, schema) in ERRORS.items():
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), os.path.join(out, f"{name}.parquet"))
    print(f"wrote {len(CASES)} cases and {len(ERRORS)} error cases to {out}")


if __name__ == "__main__":
    main(sys.argv[1])
