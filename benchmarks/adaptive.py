"""Adaptive rejection sampling vs a fixed k: tokens spent per problem solved >= K times.

Both runs go through `curate generate` on one engine in one process, on the same
problems, prompts and seeds: fixed `--num-samples M`, then `--until-correct K
--max-samples M`. Sample i of a problem is seeded the same in both, so the adaptive
run's samples are a prefix of the fixed run's and both solve the same problems (the
script checks it); the figure is completion tokens per solved problem, adaptive / fixed.
The fixed run's samples are verified with the same Math filter the adaptive run uses.

    python benchmarks/adaptive.py [--k 2] [--m 16] [--max-tokens 96] [--problems 30] [--model PATH]

Default: the embedded SmolLM2-135M-Instruct (CPU) on curate/data/arithmetic.jsonl with
the arithmetic_fewshot template (the demo set; it gets about a third right).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_INPUT = REPO / "curate" / "data" / "arithmetic.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", default=str(DEFAULT_INPUT))
    ap.add_argument("--template", default="arithmetic_fewshot")
    ap.add_argument("--problems", type=int, default=30)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--model", default=None)
    args = ap.parse_args()

    import polars as pl
    from engine import cpu_llm

    import curate
    from curate.filters.math import Math

    t0 = time.time()
    llm, model = cpu_llm(args.model)
    load_s = time.time() - t0
    common = dict(input={"path": args.input, "limit": args.problems}, model=args.model, template=args.template,
                  max_tokens=args.max_tokens, engine={"llm": llm}, progress=False, overwrite=True)
    tmp = Path(tempfile.mkdtemp())

    t = time.time()
    curate.generate(out=str(tmp / "fixed"), num_samples=args.m, **common)
    fixed_s = time.time() - t
    fixed = pl.read_parquet(tmp / "fixed" / "part-*.parquet")
    verifier = Math(workers=1)
    fixed = fixed.with_columns(correct=verifier(fixed).keep)
    verifier.close()

    t = time.time()
    curate.generate(out=str(tmp / "adaptive"), until_correct=args.k, max_samples=args.m, **common)
    adaptive_s = time.time() - t
    adaptive = pl.read_parquet(tmp / "adaptive" / "part-*.parquet")
    summary = json.loads((tmp / "adaptive" / "manifest.json").read_text())["adaptive"]

    def per_problem(df: pl.DataFrame) -> pl.DataFrame:
        return df.group_by("problem_id").agg(pl.len().alias("samples"), pl.col("correct").sum().alias("correct"),
                                             pl.col("completion_tokens").sum().alias("tokens"))

    f, a = per_problem(fixed), per_problem(adaptive)
    solved_f = set(f.filter(pl.col("correct") >= args.k)["problem_id"])
    solved_a = set(a.filter(pl.col("correct") >= args.k)["problem_id"])
    same = adaptive.join(fixed, on=["problem_id", "sample_index"], suffix="_fixed")
    identical = (same["completion"] == same["completion_fixed"]).mean()
    tokens_f, tokens_a = int(f["tokens"].sum()), int(a["tokens"].sum())
    per_f = tokens_f / max(1, len(solved_f))
    per_a = tokens_a / max(1, len(solved_a))
    result = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "date": time.strftime("%Y-%m-%d"),
        "model": model if args.model else "embedded SmolLM2-135M-Instruct", "problems": f.height,
        "k": args.k, "m": args.m, "max_tokens": args.max_tokens, "load_s": round(load_s, 1),
        "fixed": {"samples": fixed.height, "tokens": tokens_f, "solved": len(solved_f),
                  "pass_rate": round(float(fixed["correct"].mean()), 3), "tokens_per_solved": round(per_f, 1),
                  "seconds": round(fixed_s, 1)},
        "adaptive": {"samples": adaptive.height, "tokens": tokens_a, "solved": len(solved_a),
                     "rounds": summary["rounds"], "exhausted": summary["exhausted"],
                     "tokens_per_solved": round(per_a, 1), "seconds": round(adaptive_s, 1)},
        "same_solved_problems": solved_a == solved_f,
        "identical_samples": round(float(identical), 3),
        "ratio": round(per_a / per_f, 3) if per_f else None,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
