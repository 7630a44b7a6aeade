"""`curate eval`: k samples per benchmark problem, scored with the filters' verifiers.

For each benchmark, generation is an ordinary `curate generate` run (curate.generate's
plan and run: vLLM by default, resumable, any backend), kept under OUT so that `curate
filter`, `curate show` and reports work on it; scoring uses the math filter's verifier
(math-verify in worker processes with timeouts), the same one that filters data and
rewards GRPO:

    OUT/
      <benchmark>/generate/     the generations: a curate run dir (part-*.parquet, manifest)
      <benchmark>/scores.parquet  one row per sample: correct, status, predicted, vote
      results.json              per benchmark: pass@1 ± standard error, maj@k, counts
      manifest.json             config, results, versions, timings

Metrics (DeepSeek-R1, "Evaluation setup": k samples per problem at temperature 0.6,
top-p 0.95, pass@1 averaged over the k samples; also cons@64, here maj@k):

- pass@1 = mean over problems of c_i / k (c_i correct samples of problem i's k);
- its standard error: the sample standard deviation of c_i / k across problems
  (ddof 1) over sqrt(problems); 0 with one problem. It measures the spread between
  problems, the usual error bar on a benchmark score; it ignores the (smaller)
  sampling noise within a problem;
- maj@k: per problem, the k final answers vote; answers that math-verify finds
  equivalent (1/2, 0.5 and \\frac{1}{2}) vote together; samples without an answer do
  not vote. The problem counts as solved when the winning answer is correct. Ties are
  broken by the earliest sample: the answer class whose first sample has the lowest
  sample index wins. Equivalence is checked pairwise between distinct answers (each
  answer as the gold, the other as the prediction) and classes are formed greedily in
  sample order: an answer joins the first class whose first answer it matches.

Benchmarks: `math500` and `gsm8k` ship with curate (curate/data, MIT); `aime24`
(HuggingFaceH4/aime_2024) and `aime25` (yentinglin/aime_2025) come from the Hub; any
local problems file (.jsonl/.json/.parquet, a datasets folder) with a problem (or
ShareGPT `conversations` / OpenAI `messages`: the first user turn) and an answer column
works too (curate.inputs.load_problems), named by its file stem.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from curate.errors import CurateError
from curate.generate import EngineOptions
from curate.options import nested, opt
from curate.store import write_json

# name -> (display name, path or Hub name, split); shipped paths are resolved in curate.data
BENCHMARKS = {
    "math500": ("MATH-500", "shipped:math500.jsonl", "train"),
    "gsm8k": ("GSM8K", "shipped:gsm8k_test.jsonl", "train"),
    "aime24": ("AIME 2024", "HuggingFaceH4/aime_2024", "train"),
    "aime25": ("AIME 2025", "yentinglin/aime_2025", "train"),
}

# DeepSeek-R1's evaluation sampling (paper, "Evaluation setup"; model card)
R1_EVAL = {"temperature": 0.6, "top_p": 0.95, "max_tokens": 32768}


@dataclass
class EvalOptions:
    out: str = opt(help="Output: <benchmark>/generate/ run dirs, scores, results.json.", path="dir")
    benchmarks: str = opt("math500", "Comma list: math500, gsm8k, aime24, aime25, or problems files.")
    model: str | None = opt(None, "Hub name or local folder (served name with --backend openai). Default: the embedded "
                                  "SmolLM2-135M-Instruct.")
    k: int = opt(16, "Samples per problem.", cli="-k", min=1)
    backend: str = opt("vllm", "The engine.", choices=("vllm", "openai", "transformers"))
    template: str = opt("reasoning_chat", "Prompt template (R1's: step by step, answer in \\boxed{}).")
    max_tokens: int = opt(R1_EVAL["max_tokens"], "Tokens per sample at most (R1: 32,768).", min=1)
    temperature: float = opt(R1_EVAL["temperature"], "R1: 0.6.")
    top_p: float = opt(R1_EVAL["top_p"], "R1: 0.95.")
    seed: int = opt(0, "Run seed; each problem's sampling seed derives from it.")
    limit: int | None = opt(None, "Only the first N problems of each benchmark.", min=1)
    workers: int = opt(min(4, os.cpu_count() or 1), "math-verify processes (default: up to 4).", min=1,
                       show_default=False)
    timeout: float = opt(5.0, "Seconds per math-verify step.", cli="--verify-timeout", min=0, min_open=True)
    engine: EngineOptions = nested(EngineOptions, "Backend options.")
    overwrite: bool = opt(False, "Replace existing generations made with a different config.")
    progress: bool = opt(True, "Show progress bars (--no-progress: none).", cli="--no-progress")
    verbose: bool = opt(False, "Show engine output (vLLM, transformers) on the terminal too.")
    command: list[str] = opt([], "The command line recorded in the manifest.", cli=False)


@dataclass
class Benchmark:
    name: str  # the directory name under OUT
    label: str
    path: str
    split: str


def resolve(spec: str) -> list[Benchmark]:
    """"math500,gsm8k,my.jsonl" -> benchmarks; a name that is neither known nor a file
    is one line naming it."""
    out, seen = [], set()
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        if item in BENCHMARKS:
            label, path, split = BENCHMARKS[item]
            if path.startswith("shipped:"):
                path = str(resources.files("curate.data") / path.removeprefix("shipped:"))
            bench = Benchmark(item, label, path, split)
        elif Path(item).exists():
            bench = Benchmark(Path(item).stem, Path(item).name, item, "train")
        else:
            raise CurateError(f"--benchmarks: {item!r} is neither a benchmark ({', '.join(BENCHMARKS)}) nor a file")
        if bench.name in seen:
            raise CurateError(f"--benchmarks: {bench.name} is given twice")
        seen.add(bench.name)
        out.append(bench)
    if not out:
        raise CurateError("--benchmarks: give at least one benchmark")
    return out


# --- the arithmetic ------------------------------------------------------------------------


def pass_at_1(correct: list[list[bool]]) -> tuple[float, float]:
    """(pass@1, standard error): the mean over problems of the share of correct samples,
    and the standard deviation of those shares (ddof 1) over sqrt(problems)."""
    if not correct:
        return 0.0, 0.0
    shares = [sum(c) / len(c) if c else 0.0 for c in correct]
    n = len(shares)
    mean = sum(shares) / n
    if n < 2:
        return mean, 0.0
    variance = sum((s - mean) ** 2 for s in shares) / (n - 1)
    return mean, math.sqrt(variance / n)


def vote(answers: list[str | None], equivalent: dict[tuple[str, str], bool]) -> tuple[int | None, list[int | None]]:
    """Majority vote over one problem's samples. `answers[i]` is sample i's final answer
    (None: no answer, no vote); `equivalent[(a, b)]` says whether answer b matches answer a
    (a pair missing from it counts as no match; equal strings always match). Returns the
    index of the winning class's first sample (None when nobody answered) and each
    sample's class (its first sample's index). Ties go to the class that appeared first."""
    firsts: list[int] = []  # first sample index of each class
    classes: list[int | None] = []
    for i, a in enumerate(answers):
        if a is None:
            classes.append(None)
            continue
        home = next((f for f in firsts if answers[f] == a or equivalent.get((answers[f], a), False)), None)
        if home is None:
            firsts.append(i)
            home = i
        classes.append(home)
    if not firsts:
        return None, classes
    counts = {f: classes.count(f) for f in firsts}
    winner = max(firsts, key=lambda f: (counts[f], -f))
    return winner, classes


# --- scoring -------------------------------------------------------------------------------


def score(rows, workers: int, timeout: float):
    """Score one benchmark's generations (a polars frame of a generate run). Returns the
    per-sample frame and the metrics."""
    import polars as pl

    from curate.backends.base import split_prefill
    from curate.filters.math import MathPool
    from curate.train.rewards import assistant_text

    def prefill(prompt: str) -> str:
        try:
            messages = json.loads(prompt)
        except (TypeError, ValueError):
            return ""
        return split_prefill(messages)[1] if isinstance(messages, list) else ""

    texts = [assistant_text(c or "", prefill(p)) for c, p in zip(rows["completion"], rows["prompt"])]
    with MathPool(workers, timeout) as pool:
        verdicts = pool.verify(list(zip(rows["reference_answer"].to_list(), texts)))
        frame = rows.select(
            "problem_id", "sample_index", "sample_id", "finish_reason", "completion_tokens"
        ).with_columns(
            correct=pl.Series([v.correct for v in verdicts], dtype=pl.Boolean),
            status=pl.Series([v.status for v in verdicts], dtype=pl.String),
            predicted=pl.Series([v.predicted if v.status in ("correct", "wrong") else None for v in verdicts],
                                dtype=pl.String),
        )
        # equivalence between the distinct answers of each problem, in the same worker pool
        groups = frame.group_by("problem_id", maintain_order=True).agg(pl.col("predicted"), pl.col("correct"))
        pairs = []
        for answers in groups["predicted"].to_list():
            distinct = list(dict.fromkeys(a for a in answers if a is not None))
            pairs += [(a, b) for a in distinct for b in distinct if a != b]
        checked = pool.verify([(a, f"\\boxed{{{b}}}") for a, b in pairs]) if pairs else []
        equivalent = {pair: v.correct for pair, v in zip(pairs, checked)}

    votes, maj, correct_lists = [], [], []
    for answers, correct in zip(groups["predicted"].to_list(), groups["correct"].to_list()):
        winner, classes = vote(answers, equivalent)
        votes += classes
        maj.append(winner is not None and correct[winner])
        correct_lists.append(correct)
    frame = frame.with_columns(vote=pl.Series(votes, dtype=pl.Int64))  # rows are in (problem, sample) order
    p1, se = pass_at_1(correct_lists)
    n = len(correct_lists)
    metrics = {
        "problems": n,
        "samples": frame.height,
        "k": max((len(c) for c in correct_lists), default=0),
        "pass@1": p1,
        "pass@1_stderr": se,
        "maj@k": sum(maj) / n if n else 0.0,
        "answered": frame["predicted"].is_not_null().mean() if frame.height else 0.0,
        "truncated": (frame["finish_reason"] == "length").mean() if frame.height else 0.0,
        "mean_completion_tokens": frame["completion_tokens"].mean() if frame.height else 0.0,
        "statuses": dict(sorted(frame["status"].value_counts().rows())),
    }
    return frame, metrics


# --- the run -------------------------------------------------------------------------------


@dataclass
class EvalPlan:
    """One `curate eval`, checked (nothing written): a generate plan per benchmark, and OUT's run directory."""

    opts: EvalOptions
    benches: list[Benchmark]
    generations: list  # curate.generate.Plan, one per benchmark, under OUT/<benchmark>/generate
    run: object  # store.open_run's RunStore for OUT


def plan(opts: EvalOptions) -> EvalPlan:
    """Every benchmark planned first: bad names, files, templates or a config clash are
    one line, and nothing is written."""
    from importlib import import_module

    from curate.inputs import InputSpec
    from curate.store import open_run

    gen = import_module("curate.generate")  # the module; curate.generate is the API function
    if opts.k < 1:
        raise CurateError("-k must be at least 1")
    benches = resolve(opts.benchmarks)
    out = Path(opts.out)
    run = open_run(out, "eval", run_config(opts), overwrite=opts.overwrite, command=opts.command)
    plans = []
    for b in benches:
        g = gen.GenerateOptions(
            input=InputSpec(path=b.path, split=b.split, limit=opts.limit), out=str(out / b.name / "generate"),
            model=opts.model, backend=opts.backend, template=opts.template, num_samples=opts.k,
            max_tokens=opts.max_tokens, temperature=opts.temperature, top_p=opts.top_p, seed=opts.seed,
            overwrite=opts.overwrite, verbose=opts.verbose, engine=opts.engine, command=opts.command)
        generation = gen.plan(g)
        if generation.problems["reference_answer"].is_null().all():
            raise CurateError(f"{b.path}: no reference answers (an `answer` or `reference_answer` column is needed)")
        plans.append(generation)
    return EvalPlan(opts, benches, plans, run)


def run_config(opts: EvalOptions) -> dict:
    """What makes an eval what it is (not how many verifier processes or the engine's
    settings: each benchmark's generate run checks its own)."""
    return {k: v for k, v in asdict(opts).items()
            if k not in ("command", "progress", "verbose", "overwrite", "workers", "engine")}


def run(opts: EvalOptions) -> dict:
    """Plan, then in a session of OUT (the lock; running -> complete | interrupted |
    failed): generate what is missing (resuming) and score each benchmark."""
    p = plan(opts)
    out = Path(opts.out)
    replaced = tuple(d.name for d in out.iterdir() if d.is_dir()) if opts.overwrite and out.is_dir() else ()
    with p.run.session(clear=replaced) as manifest:  # --overwrite: the earlier benchmarks' folders go
        (out / "results.json").unlink(missing_ok=True)  # there only while the run is complete
        results = {}
        for b, generation in zip(p.benches, p.generations):
            results[b.name] = evaluate(b, generation, opts)
            manifest["counts"] = counts(results)
        first = p.generations[0]
        record = {"model": first.model_label, "k": opts.k, "sampling": first.sampling.to_dict(),
                  "template": opts.template, "results": results}
        write_json(out / "results.json", record)
        manifest.update(record)
    return manifest


def evaluate(b: Benchmark, generation, opts: EvalOptions) -> dict:
    """One benchmark: its generate run (resumed where it stopped), scored into
    OUT/<benchmark>/scores.parquet; returns its metrics."""
    from curate.generate import run as run_generation
    from curate.store import read_run, write_parquet_atomic

    summary = run_generation(generation, progress=opts.progress)
    if summary["counts"]["samples_done"] < summary["counts"]["samples_expected"]:
        raise CurateError(f"{b.name}: generation incomplete ({summary['counts']['samples_done']} of "
                          f"{summary['counts']['samples_expected']} samples); re-run to resume")
    frame, metrics = score(read_run(generation.opts.out), opts.workers, opts.timeout)
    write_parquet_atomic(frame, Path(opts.out) / b.name / "scores.parquet")
    return {"benchmark": b.label, "source": b.path, **metrics}


def counts(results: dict) -> dict:
    return {"benchmarks": len(results), "problems": sum(r["problems"] for r in results.values()),
            "samples": sum(r["samples"] for r in results.values())}
