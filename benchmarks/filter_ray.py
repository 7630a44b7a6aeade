"""`curate filter` on Ray: the 2-node local cluster vs 1 worker vs the local executor,
docs/s side by side in one run; and what the stage machinery costs beside the filters.

    python benchmarks/filter_ray.py [--docs 2000] [--long 100] [--shard-rows 250]
        [--only machinery,executors] [--json out.json]

Documents: benchmarks/filter.py's synthetic R1-style traces (build_docs: 2–6k characters,
planted foreign sentences, loops, near-duplicates, wrong answers) plus --long traces of
20–60k characters, in Parquet shards of --shard-rows rows, as a generate run writes them.

  machinery  `curate filter --filters format,length` (two cheap filters: the rest is the
             chain's own work) with one worker, the driver's seconds split into reading
             rows, writing Parquet (stage masks, rejected/, kept/), the funnel, and the
             filters themselves.
  executors  the whole default chain (math included; decontam against the local MATH-500
             file), end to end through `curate filter`, on each of
               local  --executor local --workers 2 (worker processes on this machine)
               ray-1  a 1-node local Ray cluster with 1 CPU (one worker)
               ray-2  the 2-node local cluster of tests/raycluster.py, 1 CPU each
             each also on 20 rows first (start-up: Ray workers, math's process pools,
             fastText), so the figures are given with and without it. The ratios:
             ray-2 / ray-1 (scaling; target >= 1.6) and ray-2 / local. The outputs of the
             three are compared row for row. Before and after, a calibration: how much
             two CPU-bound processes do side by side against one, right now (2.0 on two
             idle cores): on a shared machine, the ceiling of any 2-worker ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "benchmarks"), str(REPO / "tests")]

from filter import MATH500, build_docs  # noqa: E402  (benchmarks/filter.py's documents)

CHAIN = ["length", "format", "math", "language", "readability", "dedup",
         {"decontam": {"benchmarks": [f"MATH-500={MATH500}"]}}]


def documents(n: int, long: int) -> pl.DataFrame:
    df = build_docs(n)
    if long:
        extra = build_docs(long, seed=1, min_chars=20_000, max_chars=60_000)
        df = pl.concat([df, extra.with_columns(pl.col("sample_id") + "L")], how="vertical_relaxed")
    return df.drop("kind", "wrong")


def write_run(df: pl.DataFrame, folder: Path, shard_rows: int) -> Path:
    folder.mkdir(parents=True)
    for k, start in enumerate(range(0, df.height, shard_rows)):
        df.slice(start, shard_rows).write_parquet(folder / f"part-{k:05d}.parquet")
    return folder


def filter_run(run: Path, out: Path, chain_file: Path | None = None, filters: str | None = None,
               **options) -> tuple[float, dict]:
    from curate.chain import FilterOptions, plan
    from curate.chain import run as run_chain

    t = time.perf_counter()
    manifest = run_chain(plan(FilterOptions(input=str(run), out=str(out), chain=str(chain_file) if chain_file else None,
                                            filters=filters, progress=False, overwrite=True, **options)))
    return time.perf_counter() - t, manifest


def machinery(run: Path, tmp: Path, docs: int) -> dict:
    """Where one worker's time goes with cheap filters: wrap the chain's reading and writing."""
    from curate import chain

    spent: dict[str, float] = {}

    def timed(owner, name: str, label: str):
        real = getattr(owner, name)

        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - t

        setattr(owner, name, wrapper)
        return real

    originals = [(chain, "read_rows", timed(chain, "read_rows", "read rows")),
                 (chain, "write_parquet_atomic", timed(chain, "write_parquet_atomic", "write Parquet")),
                 (chain, "compute_funnel", timed(chain, "compute_funnel", "funnel"))]
    from curate.filters.format import Format
    from curate.filters.length import Length

    originals += [(Format, "__call__", timed(Format, "__call__", "filters")),
                  (Length, "__call__", timed(Length, "__call__", "filters"))]
    try:
        seconds, manifest = filter_run(run, tmp / "machinery", filters="format,length", workers=1)
    finally:
        for owner, name, real in originals:
            setattr(owner, name, real)
    parts = {k: round(v, 3) for k, v in spent.items()}
    parts["other"] = round(seconds - sum(spent.values()), 3)
    print(f"[machinery] format,length on {docs} docs, 1 worker: {seconds:.2f} s, {docs / seconds:,.0f} docs/s; "
          f"seconds by step {parts} ('other': masks, plan, manifest, the rest)")
    return {"seconds": round(seconds, 3), "docs_per_s": round(docs / seconds, 1), "steps_s": parts,
            "kept": manifest["funnel"]["kept"]}


def executors(run: Path, small: Path, tmp: Path, docs: int) -> dict:
    import yaml
    from raycluster import LocalCluster

    chain_file = tmp / "chain.yaml"
    chain_file.write_text(yaml.safe_dump({"filters": CHAIN}))
    results, outs = {}, {}

    def measure(label: str, **options) -> None:
        warm, _ = filter_run(small, tmp / f"{label}-small", chain_file, **options)
        seconds, manifest = filter_run(run, tmp / label, chain_file, **options)
        outs[label] = tmp / label
        results[label] = {"seconds": round(seconds, 2), "docs_per_s": round(docs / seconds, 1),
                          "startup_s": round(warm, 2), "per_filter_s": manifest["timings"]["per_filter"],
                          "executor": manifest["executor"], "kept": manifest["funnel"]["kept"]}
        print(f"[executors] {label}: {seconds:.2f} s, {docs / seconds:,.1f} docs/s (20 rows alone: {warm:.2f} s); "
              f"per filter {manifest['timings']['per_filter']}")

    measure("local", executor="local", workers=2)
    with LocalCluster(nodes=1, cpus=1, log_dir=tmp) as one:
        measure("ray-1", executor="ray", ray_address=one.address)
    with LocalCluster(nodes=2, cpus=1, log_dir=tmp) as two:
        measure("ray-2", executor="ray", ray_address=two.address)
    same = all(pl.read_parquet(outs["local"] / sub / f.name).equals(pl.read_parquet(outs[label] / sub / f.name))
               for label in ("ray-1", "ray-2") for sub in ("kept", "rejected")
               for f in sorted((outs["local"] / sub).glob("*.parquet")))
    r = results
    scaling = r["ray-2"]["docs_per_s"] / r["ray-1"]["docs_per_s"]
    steady = (r["ray-1"]["seconds"] - r["ray-1"]["startup_s"]) / (r["ray-2"]["seconds"] - r["ray-2"]["startup_s"])
    print(f"[executors] ray-2 / ray-1: {scaling:.2f}x end to end, {steady:.2f}x without the start-up "
          f"(target >= 1.6); ray-2 / local: {r['ray-2']['docs_per_s'] / r['local']['docs_per_s']:.2f}x; "
          f"outputs row for row equal: {same}")
    return {**results, "ray2_over_ray1": round(scaling, 2), "ray2_over_ray1_without_startup": round(steady, 2),
            "ray2_over_local": round(r["ray-2"]["docs_per_s"] / r["local"]["docs_per_s"], 2), "equal_outputs": same}


def _spin(n: int) -> int:
    x = 0
    for i in range(n):
        x += i * i % 7
    return x


def calibrate(n: int = 4_000_000) -> float:
    """How much two processes get done at once here, now, against one: a pure-Python loop
    once alone, then twice side by side (2.0 on two idle cores; a shared machine gives less)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_spin, [1000, 1000]))  # started outside the clock
        t = time.perf_counter()
        pool.submit(_spin, n).result()
        one = time.perf_counter() - t
        t = time.perf_counter()
        list(pool.map(_spin, [n, n]))
        two = time.perf_counter() - t
    return 2 * one / two


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--long", type=int, default=100, help="extra traces of 20-60k characters")
    ap.add_argument("--shard-rows", type=int, default=250)
    ap.add_argument("--only", default="machinery,executors")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sections = set(args.only.split(","))
    df = documents(args.docs, args.long)
    print(f"[setup] {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()}; "
          f"{df.height} traces, {df['completion'].str.len_chars().mean():,.0f} chars mean, "
          f"{df['completion'].str.len_bytes().sum() / 1e6:.1f} MB of completions; shards of {args.shard_rows} rows")
    out: dict = {"docs": df.height, "shard_rows": args.shard_rows}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        run = write_run(df, tmp / "run", args.shard_rows)
        if "machinery" in sections:
            out["machinery"] = machinery(run, tmp, df.height)
        if "executors" in sections:
            small = write_run(df.head(20), tmp / "small", args.shard_rows)
            before = calibrate()
            out["executors"] = executors(run, small, tmp, df.height)
            after = calibrate()
            out["two_processes_over_one"] = [round(before, 2), round(after, 2)]
            print(f"[calibration] two CPU-bound processes side by side do {before:.2f}x the work of one before the "
                  f"executors section, {after:.2f}x after (2.0 on two idle cores): the ceiling of any 2-worker ratio "
                  f"here")
    out["load_after"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
