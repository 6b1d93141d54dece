"""Peak memory of `bpo data stats` on a large Parquet file: writes a file of about SIZE_GB of
preference pairs with pyarrow (row groups of 10k rows, snappy), runs the bpo binary on it and
prints the file size, the uncompressed size, the peak RSS and the wall time. An existing file of
that size is reused.

    python scripts/parquet_rss.py BPO_BINARY OUT_DIR [SIZE_GB]

The text is random words (snappy keeps it near its size), so the file's size is about the
text's. Nothing here is a test: it is the measurement the README and issue 27 quote.
"""

import os
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROWS_PER_GROUP = 10_000


def words(rng, vocab, n_words):
    return " ".join(vocab[rng.integers(0, len(vocab), n_words)])


def write(path, rng, vocab, target):
    schema = pa.schema([("prompt", pa.string()), ("chosen", pa.string()),
                        ("rejected", pa.string())])
    with pq.ParquetWriter(path, schema, compression="snappy") as w:
        while os.path.getsize(path) < target:
            batch = {k: [words(rng, vocab, n) for _ in range(ROWS_PER_GROUP)]
                     for k, n in (("prompt", 60), ("chosen", 120), ("rejected", 120))}
            w.write_table(pa.table(batch))


def main(binary, out_dir, size_gb=1.0):
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "large.parquet")
    target = size_gb * 1e9
    started = time.time()
    if os.path.exists(path) and os.path.getsize(path) >= target:
        print(f"reusing {path}")
    else:
        rng = np.random.default_rng(0)
        # Random 3-9 letter "words": close to incompressible for snappy.
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
        vocab = np.array(["".join(rng.choice(letters, rng.integers(3, 10)))
                          for _ in range(200_000)])
        write(path, rng, vocab, target)
    meta = pq.ParquetFile(path).metadata
    text = sum(meta.row_group(g).column(c).total_uncompressed_size
               for g in range(meta.num_row_groups) for c in range(meta.num_columns))
    size = os.path.getsize(path)
    print(f"{path}: {size / 1e9:.2f} GB on disk, {text / 1e9:.2f} GB uncompressed, "
          f"{meta.num_rows} rows in {meta.num_row_groups} row groups ({time.time() - started:.0f} s)")
    # The binary runs under a fresh, small interpreter: a child forked from this one would count
    # this process's memory (pyarrow, the written batches) in its peak until it execs.
    measure = ("import resource, subprocess, sys\n"
               "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
               "sys.stderr.write(done.stderr)\n"
               "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
               "print(done.stdout)\n")
    started = time.time()
    done = subprocess.run([sys.executable, "-c", measure, binary, "data", "stats", path],
                          capture_output=True, text=True)
    wall = time.time() - started
    code, peak_kb = (int(v) for v in done.stdout.split("\n", 1)[0].split())
    if code != 0:
        sys.exit(done.stderr)
    print(done.stdout.split("\n", 1)[1].strip().splitlines()[0])
    print(f"bpo data stats: peak RSS {peak_kb / 1e3:.0f} MB for a {size / 1e9:.2f} GB file "
          f"({100 * peak_kb * 1e3 / size:.1f}% of its size), {wall:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(float(a) for a in sys.argv[3:]))
