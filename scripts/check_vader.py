#!/usr/bin/env python3
"""Checks our VADER against Python vaderSentiment 3.3.2, the reference implementation.

    check_vader.py [--write]

crates/algos/tests/fixtures/vader_fixture.jsonl holds a few hundred texts (human sentences of
every genre of the embedded task, constructed cases for VADER's rules, model outputs) with the
compound score of vaderSentiment 3.3.2 ("python") and of bpo ("bpo", kept current by the Rust
test `vader_matches_the_committed_scores`, which also requires a "note" on every text where the
two differ by more than 0.01). This script recomputes "python" and fails if it changed; it prints
the agreement. With --write it (re)writes "python" for every text of the fixture (and adds texts
listed in vader_texts.jsonl that the fixture lacks).
"""
import json
import os
import sys

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "crates", "algos", "tests", "fixtures", "vader_fixture.jsonl")
TEXTS = os.path.join(HERE, "..", "crates", "algos", "tests", "fixtures", "vader_texts.jsonl")


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    analyzer = SentimentIntensityAnalyzer()
    write = "--write" in sys.argv[1:]
    rows = load(FIXTURE) if os.path.exists(FIXTURE) else []
    if write:
        known = {r["text"] for r in rows}
        rows += [{"source": t["source"], "text": t["text"]} for t in load(TEXTS) if t["text"] not in known]
        for r in rows:
            r["python"] = analyzer.polarity_scores(r["text"])["compound"]
        with open(FIXTURE, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"wrote {len(rows)} texts to {FIXTURE}")
        return
    changed = [r for r in rows if abs(analyzer.polarity_scores(r["text"])["compound"] - r["python"]) > 1e-9]
    if changed:
        sys.exit(f"FAIL: vaderSentiment now scores {len(changed)} texts differently, e.g. {changed[0]['text']!r}")
    diffs = [abs(r["bpo"] - r["python"]) for r in rows if "bpo" in r]
    if len(diffs) != len(rows):
        sys.exit("FAIL: the fixture lacks bpo scores: run the Rust test with BPO_BLESS_VADER=1")
    agree = sum(d <= 0.01 for d in diffs)
    signs = sum((r["bpo"] > 0) == (r["python"] > 0) and (r["bpo"] < 0) == (r["python"] < 0) for r in rows)
    print(
        f"vader: {len(rows)} texts; bpo vs vaderSentiment 3.3.2: {agree} within 0.01 "
        f"({100 * agree / len(rows):.1f}%), same sign on {signs}, max |diff| {max(diffs):.4f}, "
        f"mean |diff| {sum(diffs) / len(diffs):.5f}; every larger difference is explained in the fixture's notes"
    )


if __name__ == "__main__":
    main()
