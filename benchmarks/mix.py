"""`curate mix` at production scale: 600k reasoning + 200k general rows = 800k, timed
end to end (reading the sources, messages, stratified sampling, tokenising every
delivered row for num_tokens, shuffling, the Hub Parquet shards, save_to_disk, the
card with its plots), with the time of each phase and the peak memory.

The sources are synthetic, written before the clock starts:

  reasoning  --available-reasoning rows shaped like a `curate select` output (problem,
             completion, reasoning, answer, domain math / code / science in 6:3:1),
             the reasoning built from GSM8K and MATH-500 solutions (tests/data, curate/data)
             (shuffled paragraphs, about --chars characters of thinking per row),
             with generate's `model` (the embedded model's name) and `completion_tokens`
             (synthetic: characters / 4 — the figures time the work, the counts are not
             checked); down-sampled to --reasoning rows, stratified by domain; with
             --recount every row is tokenised as before generate's counts were reused
  general    --available-general chat rows with `messages` (short answers), up-sampled
             to --general rows with --no-cot

    python benchmarks/mix.py [--reasoning 600000] [--general 200000]
        [--available-reasoning 700000] [--available-general 150000] [--chars 1500]
        [--workdir /tmp/curate-mix-bench] [--recount] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import time
from importlib import import_module
from pathlib import Path

import numpy as np
import polars as pl

from curate.embedded import EMBEDDED_NAME

mix = import_module("curate.mix")  # curate.mix is the API function


REPO = Path(__file__).resolve().parent.parent
MATH500 = REPO / "tests" / "data" / "math500_test.jsonl"  # with worked solutions (MIT; tests/data/README.md)
GSM8K = REPO / "curate" / "data" / "gsm8k_test.jsonl"


def paragraphs() -> list[str]:
    out = []
    for line in GSM8K.read_text().splitlines():
        r = json.loads(line)
        out += [r["question"], *[p.replace("<<", "(").replace(">>", ")") for p in r["answer"].split("\n") if p.strip()]]
    for line in MATH500.read_text().splitlines():
        r = json.loads(line)
        out += [p for p in r.get("solution", "").split("\n\n") if p.strip()] + [r["problem"]]
    out += ["Wait, let me double-check this step before going on.", "Hmm, that does not look right. Let me redo it.",
            "So far so good: every quantity is accounted for."]
    return [p for p in out if 20 < len(p) < 2000]


def write_sources(root: Path, n_reasoning: int, n_general: int, chars: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    pool = pl.Series(paragraphs())
    mean_len = float(pool.str.len_chars().mean())
    per_row = max(1, round(chars / (mean_len + 2)))
    counts = rng.integers(max(1, per_row // 2), per_row * 3 // 2 + 1, size=n_reasoning)
    picks = rng.integers(0, len(pool), size=int(counts.sum()))
    row_of = np.repeat(np.arange(n_reasoning), counts)
    pieces = pl.DataFrame({"row": row_of, "text": pool.gather(picks)})
    reasoning = pieces.group_by("row", maintain_order=True).agg(pl.col("text").str.join("\n\n"))["text"]
    ids = pl.Series(np.arange(n_reasoning)).cast(pl.String)
    domain = pl.Series(rng.choice(np.array(["math", "code", "science"]), size=n_reasoning, p=[0.6, 0.3, 0.1]))
    problems = pool.gather(rng.integers(0, len(pool), size=n_reasoning))
    answer = pl.lit("The answer is \\boxed{") + ids + pl.lit("}.")
    df = pl.DataFrame({"problem_id": "p" + ids, "sample_id": "p" + ids + ":teacher:0", "source": "synthetic",
                       "domain": domain, "problem": problems, "reasoning": reasoning}).with_columns(
        answer=answer).with_columns(
        completion=pl.lit("<think>\n") + pl.col("reasoning") + pl.lit("\n</think>\n\n") + pl.col("answer"),
        run=pl.lit("runs/synthetic/generate"), model=pl.lit(EMBEDDED_NAME)).with_columns(
        completion_tokens=(pl.col("completion").str.len_chars() // 4).cast(pl.Int32))
    (root / "reasoning").mkdir(parents=True, exist_ok=True)
    step = 100_000
    for i in range(0, n_reasoning, step):
        df.slice(i, step).write_parquet(root / "reasoning" / f"part-{i // step:05d}.parquet")
    del df, pieces, reasoning
    q = pool.gather(rng.integers(0, len(pool), size=n_general)).str.slice(0, 300)
    a = pool.gather(rng.integers(0, len(pool), size=n_general)).str.slice(0, 400)
    gen = pl.DataFrame({"q": q, "a": a}).select(
        messages=pl.concat_list(pl.struct(role=pl.lit("user"), content=pl.col("q") + pl.lit(" #") +
                                          pl.int_range(pl.len()).cast(pl.String)),
                                pl.struct(role=pl.lit("assistant"), content=pl.col("a"))),
        domain=pl.lit("general"))
    gen.write_parquet(root / "general.parquet")


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the token workers):
    on a shared machine, the work done, whatever the other load."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reasoning", type=int, default=600_000)
    ap.add_argument("--general", type=int, default=200_000)
    ap.add_argument("--available-reasoning", type=int, default=700_000)
    ap.add_argument("--available-general", type=int, default=150_000)
    ap.add_argument("--chars", type=int, default=1500, help="mean characters of reasoning per row")
    ap.add_argument("--workdir", default="/tmp/curate-mix-bench")
    ap.add_argument("--json", default=None)
    ap.add_argument("--recount", action="store_true", help="tokenise every row (--token-counts recount)")
    ap.add_argument("--keep", action="store_true", help="keep the sources and the output")
    a = ap.parse_args()

    root = Path(a.workdir)
    shutil.rmtree(root, ignore_errors=True)
    t = time.time()
    write_sources(root, a.available_reasoning, a.available_general, a.chars)
    setup = time.time() - t
    mix.load_tokenizer(None)  # the one-off GGUF -> folder conversion stays outside the clock

    t, cpu = time.time(), cpu_seconds()
    m = mix.run(mix.MixOptions(
        out=str(root / "mix"), sources=[f"reasoning={root / 'reasoning'}:{a.reasoning}",
                                        f"general={root / 'general.parquet'}:{a.general}"],
        allow_upsample=True, no_cot=("general",), test_size=0.01, seed=0, progress=False,
        token_counts="recount" if a.recount else "reuse",
        command=["python", "benchmarks/mix.py"]))
    wall, cpu = time.time() - t, cpu_seconds() - cpu
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    rows = m["counts"]["rows"]
    tokens = (pl.scan_parquet(str(root / "mix" / "data" / "*.parquet"))
              .select(pl.col("num_tokens").sum()).collect().item())
    data_bytes = sum(f.stat().st_size for f in (root / "mix" / "data").iterdir())
    disk_bytes = sum(f.stat().st_size for f in (root / "mix" / "dataset").rglob("*") if f.is_file())
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores", "rows": rows, "splits": m["splits"],
        "sources": {s["name"]: {k: s[k] for k in ("requested", "available", "delivered", "upsampled")}
                    for s in m["sources"]},
        "wall_s": round(wall, 1), "cpu_s (user+system, token workers included)": round(cpu, 1),
        "rows_per_s": round(rows / wall), "phases_s": m["timings"],
        "tokens": tokens, "tokens_per_s_in_tokenize_phase": round(tokens / max(m["timings"]["tokenize"], 1e-9)),
        "unique_rows": m["counts"]["unique_rows"], "token_counts": a.recount and "recount" or "reuse",
        "rows_reused_counted": {s["name"]: s["num_tokens"] for s in m["sources"]}, "peak_rss_gib": round(peak_gib, 2),
        "parquet_mib": round(data_bytes / 2**20), "save_to_disk_mib": round(disk_bytes / 2**20),
        "setup_s (not timed)": round(setup, 1),
    }
    print(json.dumps(result, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")
    if not a.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
