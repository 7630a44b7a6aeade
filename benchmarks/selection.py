"""`curate select` on a large filter run (benchmarks/selection.py: a file named select.py would hide the
standard library's `select`): time and peak memory against the size of the
texts, the policy run on lazily read keys and the selected rows written by one lazy scan.

The input is synthetic, written before the clock starts: a `curate filter`-shaped folder
(kept/part-*.parquet, rejected/02-math-part-*.parquet, manifest.json with a chain
length → dedup → math... and its funnel) of --rows generate-shaped rows, --per-problem
samples per problem, each completion about --chars characters (paragraphs of the GSM8K
test solutions, curate/data), with `completion_tokens`; a quarter of the samples are
rejected by the math filter, so problems have pass rates. The select run keeps problems
with a pass rate in [0.25, 0.75] and one row each (--policy one --one-by shortest).
It runs in a fresh process so that its peak RSS is its own.

    python benchmarks/selection.py [--rows 1000000] [--per-problem 8] [--chars 2000]
        [--workdir /tmp/curate-select-bench] [--keep] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parent.parent
GSM8K = REPO / "curate" / "data" / "gsm8k_test.jsonl"
FILES = 10


def write_input(root: Path, rows: int, per_problem: int, chars: int, seed: int = 0) -> int:
    """The filter-shaped folder; returns the characters of completion text in it."""
    rng = np.random.default_rng(seed)
    pool = pl.Series([p for line in GSM8K.read_text().splitlines()
                      for p in json.loads(line)["answer"].split("\n") if len(p) > 20])
    per_row = max(1, round(chars / (float(pool.str.len_chars().mean()) + 1)))
    (root / "kept").mkdir(parents=True)
    (root / "rejected").mkdir()
    text_chars, kept_total, rejected_total = 0, 0, 0
    step = -(-rows // FILES)
    for f in range(FILES):
        lo, hi = f * step, min(rows, (f + 1) * step)
        n = hi - lo
        picks = rng.integers(0, len(pool), size=n * per_row)
        completion = (pl.DataFrame({"row": np.repeat(np.arange(n), per_row), "text": pool.gather(picks)})
                      .group_by("row", maintain_order=True).agg(pl.col("text").str.join("\n"))["text"])
        i = pl.int_range(lo, hi, eager=True)
        df = pl.DataFrame({"problem_id": "p" + (i // per_problem).cast(pl.String),
                           "sample_id": "p" + (i // per_problem).cast(pl.String) + ":teacher:"
                           + (i % per_problem).cast(pl.String),
                           "source": "synthetic", "domain": "math", "problem": "What is the answer?",
                           "completion": "<think>\n" + completion + "\n</think>\n\n\\boxed{7}",
                           "finish_reason": "stop", "model": "teacher"})
        df = df.with_columns(completion_tokens=(pl.col("completion").str.len_chars() // 4).cast(pl.Int32))
        text_chars += int(df["completion"].str.len_chars().sum())
        wrong = pl.Series(rng.random(n) < 0.25)
        df.filter(~wrong).write_parquet(root / "kept" / f"part-{f:05d}.parquet")
        df.filter(wrong).with_columns(reason=pl.lit("wrong answer")).write_parquet(
            root / "rejected" / f"02-math-part-{f:05d}.parquet")
        kept_total += int((~wrong).sum())
        rejected_total += int(wrong.sum())
    chain = [{"filter": "length", "params": {}}, {"filter": "dedup", "params": {}}, {"filter": "math", "params": {}}]
    steps = [{"filter": "length", "rows_in": rows, "dropped": 0, "kept": rows, "by_reason": {}},
             {"filter": "dedup", "rows_in": rows, "dropped": 0, "kept": rows, "by_reason": {}},
             {"filter": "math", "rows_in": rows, "dropped": rejected_total, "kept": kept_total,
              "by_reason": {"wrong answer": rejected_total}}]
    (root / "manifest.json").write_text(json.dumps({
        "stage": "filter", "status": "complete", "config": {"chain": chain}, "inputs": {"path": None},
        "funnel": {"rows_in": rows, "kept": kept_total, "rejected": rejected_total, "steps": steps}}))
    return text_chars


def child(filter_dir: str, out: str) -> None:
    """The timed select, in its own process."""
    from importlib import import_module

    select = import_module("curate.select")  # curate.select is the API function
    t = time.time()
    m = select.run(select.SelectOptions(input=filter_dir, out=out, policy="one", one_by="shortest",
                                        pass_rate_band=(0.25, 0.75), progress=False))
    print(json.dumps({"wall_s": round(time.time() - t, 1), "counts": m["counts"],
                      "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--per-problem", type=int, default=8)
    ap.add_argument("--chars", type=int, default=2000)
    ap.add_argument("--workdir", default="/tmp/curate-select-bench")
    ap.add_argument("--json", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the input and the output")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(*a.child)
    root = Path(a.workdir)
    shutil.rmtree(root, ignore_errors=True)
    t = time.time()
    text_chars = write_input(root / "filter", a.rows, a.per_problem, a.chars)
    setup = time.time() - t
    r = subprocess.run([sys.executable, __file__, "--child", str(root / "filter"), str(root / "select")],
                       capture_output=True, text=True, check=True)
    result = json.loads(r.stdout.strip().splitlines()[-1])
    result.update(machine=f"{platform.machine()}, {os.cpu_count()} cores", rows=a.rows,
                  completion_text_gib=round(text_chars / 2**30, 2),
                  input_parquet_mib=round(sum(f.stat().st_size for f in (root / "filter").rglob("*.parquet")) / 2**20),
                  output_rows=pl.scan_parquet(root / "select" / "data" / "*.parquet").select(pl.len()).collect().item(),
                  **{"setup_s (not timed)": round(setup, 1)})
    print(json.dumps(result, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")
    if not a.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
