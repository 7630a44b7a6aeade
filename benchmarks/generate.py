"""Does `curate generate` add cost to the engine? Raw `vllm.LLM.generate` against the
full curate pipeline (render, tokenise, stream, parse, write Parquet shards, manifest),
on the same engine, in one process, on the same prompts × n, with the same per-request
seeds (so both produce the same tokens). Rounds alternate raw / curate to spread the
noise of a shared machine; the figure is the ratio of output tokens/s.

    python benchmarks/generate.py [--problems 64] [-n 4] [--max-tokens 256] [--rounds 2] [--model PATH]

Default model: the embedded SmolLM2-135M-Instruct (CPU, fp32, eager).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_INPUT = REPO / "curate" / "data" / "gsm8k_test.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", default=str(DEFAULT_INPUT))
    ap.add_argument("--problems", type=int, default=64)
    ap.add_argument("-n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--model", default=None)
    args = ap.parse_args()

    from engine import cpu_llm
    from vllm import SamplingParams

    from curate.backends.base import derive_seed
    from curate.generate import EngineOptions, GenerateOptions, plan, run, variables
    from curate.inputs import InputSpec

    t0 = time.time()
    llm, model = cpu_llm(args.model)
    load_s = time.time() - t0
    tokenizer = llm.get_tokenizer()

    def curate_options(out: str) -> GenerateOptions:
        return GenerateOptions(input=InputSpec(path=args.input, limit=args.problems), out=out, model=model,
                               num_samples=args.n, max_tokens=args.max_tokens, overwrite=True,
                               engine=EngineOptions(llm=llm), shard_rows=1000)

    # the raw side gets exactly the prompts and per-request seeds curate uses
    probe = plan(curate_options(tempfile.mkdtemp()))
    compiled = probe.template.compile()
    texts, params = [], []
    for row in probe.problems.iter_rows(named=True):
        messages = probe.template.render(variables(row, None), compiled)
        texts.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        params.append(SamplingParams(n=args.n, temperature=probe.sampling.temperature, top_p=probe.sampling.top_p,
                                     max_tokens=args.max_tokens, seed=derive_seed(0, row["problem_id"])))

    def raw_round() -> tuple[int, float]:
        start = time.perf_counter()
        outs = llm.generate(texts, params, use_tqdm=False)
        seconds = time.perf_counter() - start
        return sum(len(c.token_ids) for o in outs for c in o.outputs), seconds

    def curate_round() -> tuple[int, float]:
        out = tempfile.mkdtemp(prefix="curate-bench-")
        try:
            start = time.perf_counter()
            summary = run(plan(curate_options(out)), progress=False)
            seconds = time.perf_counter() - start
            return summary["counts"]["completion_tokens"], seconds
        finally:
            shutil.rmtree(out, ignore_errors=True)

    llm.generate(texts[:4], params[:4], use_tqdm=False)  # warm-up
    results = []
    for r in range(args.rounds):
        for name, fn in (("raw vllm.LLM.generate", raw_round), ("curate generate", curate_round)):
            tokens, seconds = fn()
            results.append({"round": r + 1, "side": name, "tokens": tokens, "seconds": round(seconds, 2),
                            "tok_s": round(tokens / seconds, 1)})
            print(f"round {r + 1}  {name:24s} {tokens:7d} output tokens in {seconds:7.2f} s = "
                  f"{tokens / seconds:8.1f} tok/s", flush=True)

    raw = [x for x in results if x["side"].startswith("raw")]
    cur = [x for x in results if x["side"].startswith("curate")]
    raw_tps = sum(x["tokens"] for x in raw) / sum(x["seconds"] for x in raw)
    cur_tps = sum(x["tokens"] for x in cur) / sum(x["seconds"] for x in cur)
    summary = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {_cpus()} CPUs, {platform.system()} {platform.release()}",
        "model": Path(model).name, "problems": args.problems, "n": args.n, "max_tokens": args.max_tokens,
        "engine_load_s": round(load_s, 1),
        "raw_tok_s": round(raw_tps, 1), "curate_tok_s": round(cur_tps, 1), "ratio": round(cur_tps / raw_tps, 3),
        "rounds": results,
    }
    print(json.dumps(summary, indent=2))
    print(f"ratio curate / raw = {cur_tps / raw_tps:.3f}  (target >= 0.97)")


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
