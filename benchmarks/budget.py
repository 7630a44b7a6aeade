"""Thinking budgets (s1's budget forcing): what `--min-think-tokens` / `--max-think-tokens`
do to the thinking length, the answers and the throughput, against no budget.

Every run goes through `curate generate` on one engine in one process, on the same
problems, prompts and seeds; runs are interleaved over --rounds so load drifts hit all
alike. Per run: thinking tokens (median, min, max), completion tokens, how often "Wait"
was inserted and the end of thinking forced, the share the Math filter verifies, and the
engine's output tokens/s during generation (the budget's cost: a forced continuation or
stop is a second request for that sample).

    python benchmarks/budget.py [--problems 30] [-n 2] [--max-tokens 192] [--rounds 2] [--model PATH]

Default: the embedded SmolLM2-135M-Instruct (CPU) on curate/data/arithmetic.jsonl with the
arithmetic_fewshot template, which opens a think block (the model closes it after ~20
tokens on its own).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_INPUT = REPO / "curate" / "data" / "arithmetic.jsonl"
RUNS = {"none": {}, "max 8": {"max_think_tokens": 8}, "min 64": {"min_think_tokens": 64},
        "min 32 max 64": {"min_think_tokens": 32, "max_think_tokens": 64}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", default=str(DEFAULT_INPUT))
    ap.add_argument("--template", default="arithmetic_fewshot")
    ap.add_argument("--problems", type=int, default=30)
    ap.add_argument("-n", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=192)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--model", default=None)
    args = ap.parse_args()

    import polars as pl
    from engine import cpu_llm

    import curate
    from curate.filters.math import Math

    llm, model = cpu_llm(args.model)
    common = dict(input={"path": args.input, "limit": args.problems}, model=args.model, template=args.template,
                  num_samples=args.n, max_tokens=args.max_tokens, engine={"llm": llm}, progress=False,
                  overwrite=True)
    tmp = Path(tempfile.mkdtemp())
    verifier = Math(workers=1)
    speed: dict[str, list[float]] = {name: [] for name in RUNS}
    results = {}
    for r in range(args.rounds):
        for name, budget in RUNS.items():
            out = tmp / f"{name.replace(' ', '_')}-{r}"
            manifest = curate.generate(out=str(out), **common, **budget).manifest
            speed[name].append(manifest["timings"]["sessions"][-1]["output_tokens_per_s"])
            if r == 0:
                df = pl.read_parquet(out / "part-*.parquet")
                think = df["think_tokens"].drop_nulls().to_list()
                results[name] = {
                    "samples": df.height,
                    "think_median_min_max": [statistics.median(think), min(think), max(think)] if think else [],
                    "completion_tokens_mean": round(float(df["completion_tokens"].mean()), 1),
                    "forced_waits": int(df["forced_waits"].fill_null(0).sum()),
                    "forced_stops": int(df["forced_stop"].fill_null(False).sum()),
                    "verified_correct": round(float(verifier(df).keep.mean()), 3),
                }
    verifier.close()
    base = statistics.median(speed["none"])
    for name in RUNS:
        results[name]["output_tokens_per_s"] = [round(s, 1) for s in speed[name]]
        results[name]["throughput_vs_none"] = round(statistics.median(speed[name]) / base, 3)
    print(json.dumps({"machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                      "date": time.strftime("%Y-%m-%d"), "problems": args.problems, "n": args.n,
                      "max_tokens": args.max_tokens, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
