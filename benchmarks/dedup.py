"""Near-duplicate detection at scale: the `Dedup` filter's stateful protocol (index per
shard → resolve → mark) over Parquet shards streamed from disk, and the side-by-side
comparison with datasketch's vectorised `MinHash.bulk` + `MinHashLSH` at equal recall.

  compare  N documents in memory (default 100,000): ours in one process (one
           shard: index and resolve inline) and through the local executor (shards, 2 workers) vs
           datasketch (same normalisation, word 5-grams, threshold 0.8, num_perm 128, same
           Jaccard check); recall on the planted near-duplicates
  scale    N documents written as Parquet shards of --shard-rows, then deduplicated with
           the texts streamed: index tasks read their shard from disk, the driver holds
           only the indexes (ids, keys, 8-bit signatures); seconds per step, peak RSS of
           the driver and of the largest worker, recall; on each of --executors (local:
           worker processes; ray: the 2-node local cluster, 1 CPU per node)

    python benchmarks/dedup.py [--only compare,scale] [--compare-docs 100000]
        [--scale-docs 1000000] [--executors local,ray] [--workers 2] [--json out.json]

Documents are benchmarks/filter.py's near-dup documents (~260 words drawn from MATH-500
and GSM8K sentences; 5% planted copies with 2–3 words edited). Benchmark-only
dependencies: datasketch, psutil.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import multiprocessing
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl
import psutil

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent / "tests")]
from filter import (  # noqa: E402 - a sibling benchmark module
    SENTENCE,
    UnionFind,
    build_neardup_docs,
    edit_words,
    load_items,
    score_clusters,
    shingles,
)

from curate.executor import make_executor  # noqa: E402
from curate.filters import dedup as dedup_mod  # noqa: E402

THRESHOLD, NUM_PERM, SEED = 0.8, 128, 42


class PeakRss:
    """Peak resident memory (MiB) of this process and of its largest child while the
    block runs (sampled every 0.1 s: the documents' generation before it does not count)."""

    def __enter__(self) -> PeakRss:
        self.own = self.child = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            try:
                self.own = max(self.own, me.memory_info().rss / 2**20)
                for c in me.children(recursive=True):
                    self.child = max(self.child, c.memory_info().rss / 2**20)
            except psutil.Error:
                pass
            self._stop.wait(0.1)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def survivors_from_reasons(ids, reasons) -> dict:
    out = {}
    for x, r in zip(ids, reasons):
        if r is not None:
            out[x] = r.split(" of ")[1].split(" ")[0]
    return out


def run_protocol(f, shards, executor) -> tuple[dict, dict]:
    """Index (tasks), resolve, mark: (survivor by id, seconds per step). `shards` are
    frames (shipped to the workers) or Parquet paths (read by the workers)."""
    t = time.perf_counter()
    if shards and isinstance(shards[0], (str, Path)):
        offsets = np.cumsum([0] + [pl.scan_parquet(p).select(pl.len()).collect().item() for p in shards[:-1]])
        indexes = list(executor.map(dedup_mod.index_part, [(f, str(p), int(o)) for p, o in zip(shards, offsets)]))
    else:
        indexes = list(executor.map(f.index, shards))
    t_index = time.perf_counter()
    f.resolve(indexes, executor)
    t_resolve = time.perf_counter()
    index_mib = sum(i.estimated_size() for i in indexes) / 2**20
    del indexes
    survivor = {}
    for shard in shards:
        batch = pl.read_parquet(shard, columns=["sample_id"]) if isinstance(shard, (str, Path)) else shard
        reasons = f(batch).reason
        survivor.update(survivors_from_reasons(batch["sample_id"].to_list(), reasons.to_list()))
    t_mark = time.perf_counter()
    steps = {"index_s": t_index - t, "resolve_s": t_resolve - t_index, "mark_s": t_mark - t_resolve}
    return survivor, {**{k: round(v, 2) for k, v in steps.items()}, "seconds": round(t_mark - t, 2),
                      "index_mib": round(index_mib, 1)}


def bench_compare(n: int, workers: int) -> dict:
    from datasketch import MinHash, MinHashLSH

    frame, truth = build_neardup_docs(n, 250, 0.05)
    ids = frame["sample_id"].to_list()
    chars = frame["completion"].str.len_bytes()
    res = {"docs": n, "planted": len(truth), "text_mib": round(chars.sum() / 2**20), "workers": workers}
    print(f"[compare] {n:,} docs, {chars.mean():,.0f} bytes mean, {len(truth):,} planted near-duplicates")

    gc.collect()
    f = dedup_mod.Dedup(mode="near", threshold=THRESHOLD, num_perm=NUM_PERM)
    t, cpu = time.perf_counter(), time.process_time()
    with make_executor("local", 1) as inline:
        f.resolve([f.index(frame)], inline)
    one_s, one_cpu = time.perf_counter() - t, time.process_time() - cpu
    one = score_clusters(lambda x, s=survivors_from_reasons(ids, f(frame).reason.to_list()): s.get(x, x), ids, truth)
    print(f"[compare] ours, one process (one shard, index + resolve inline): {one_s:.2f} s ({one_cpu:.2f} s CPU), "
          f"recall {one['recall']:.4f}, dropped beyond the plant {one['dropped_beyond_plant']}")
    res["ours_one_process"] = {"seconds": round(one_s, 2), "cpu_s": round(one_cpu, 2), **one}

    shard_rows = -(-n // (4 * workers))
    shards = [frame.slice(k, shard_rows) for k in range(0, n, shard_rows)]
    with make_executor("local", workers) as executor:
        list(executor.map(abs, range(workers)))  # start the worker processes outside the clock
        survivor, steps = run_protocol(dedup_mod.Dedup(mode="near"), shards, executor)
    par = score_clusters(lambda x: survivor.get(x, x), ids, truth)
    print(f"[compare] ours, local executor {workers} workers ({len(shards)} shards): {steps['seconds']:.2f} s "
          f"(index {steps['index_s']}, resolve {steps['resolve_s']}, mark {steps['mark_s']}), "
          f"recall {par['recall']:.4f}")
    res["ours_executor"] = {**steps, **par}
    del shards
    gc.collect()

    # datasketch: same normalisation, same shingles, same check (as benchmarks/filter.py)
    t, cpu = time.perf_counter(), time.process_time()
    norm = dedup_mod.normalized_texts(frame["completion"])
    tokens = [[s.encode() for s in shingles(x)] for x in norm.to_list()]
    t_sig = time.perf_counter()
    mhs = MinHash.bulk(tokens, num_perm=NUM_PERM, seed=SEED)
    t_idx = time.perf_counter()
    matrix = np.stack([m.hashvalues for m in mhs])
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    with lsh.insertion_session() as session:
        for i, m in enumerate(mhs):
            session.insert(i, m, check_duplication=False)
    uf = UnionFind()
    for i, m in enumerate(mhs):
        others = np.array([j for j in lsh.query(m) if j > i], dtype=np.int64)
        if len(others):
            jac = (matrix[others] == matrix[i]).mean(axis=1)
            for j in others[jac >= THRESHOLD]:
                uf.union(ids[i], ids[int(j)])
    ds_s, ds_cpu = time.perf_counter() - t, time.process_time() - cpu
    theirs = score_clusters(uf.find, ids, truth)
    print(f"[compare] datasketch {__import__('datasketch').__version__} MinHash.bulk + MinHashLSH (b={lsh.b} r={lsh.r};"
          f" normalise + shingle {t_sig - t:.1f} s, MinHash.bulk {t_idx - t_sig:.1f} s): {ds_s:.2f} s "
          f"({ds_cpu:.2f} s CPU), "
          f"recall {theirs['recall']:.4f}")
    res["datasketch"] = {"seconds": round(ds_s, 2), "cpu_s": round(ds_cpu, 2),
                         "normalise_shingle_s": round(t_sig - t, 2), "bulk_s": round(t_idx - t_sig, 2), **theirs}
    res["ratio_one_process"] = round(ds_s / one_s, 1)
    res["ratio_executor"] = round(ds_s / steps["seconds"], 1)
    res["ratio_cpu_one_process"] = round(ds_cpu / one_cpu, 1)
    print(f"[compare] speed ratio datasketch / ours: one process {res['ratio_one_process']}x "
          f"(CPU seconds {res['ratio_cpu_one_process']}x), {workers} workers {res['ratio_executor']}x "
          f"(target >= 20x at equal recall)")
    return res


def write_shards(n: int, shard_rows: int, folder: Path, seed: int = 1) -> tuple[list[Path], list, int]:
    """n documents as Parquet shards, written one at a time (the texts are never all in
    memory): 95% distinct, 5% near copies (2–3 words edited) of a document of the same
    or the previous shard. Returns (shards, planted pairs, text bytes)."""
    rng = random.Random(seed)
    pool = []
    for item in load_items():
        pool += [s for s in SENTENCE.split(item["problem"] + " " + item["solution"]) if 4 <= len(s.split()) <= 60]
    vocab = [w for s in rng.sample(pool, 2000) for w in s.split() if w.isalpha()]
    lengths = np.array([s.count(" ") + 1 for s in pool])
    files, truth, total, prev = [], [], 0, None
    for k, start in enumerate(range(0, n, shard_rows)):
        rows = min(shard_rows, n - start)
        n_dup = rows // 20
        texts, ids = [], [f"d{start + i:09d}" for i in range(rows)]
        for _ in range(rows - n_dup):
            picks = rng.choices(range(len(pool)), k=30)
            out = np.cumsum(lengths[picks])
            texts.append(" ".join(pool[p] for p in picks[: int(np.searchsorted(out, 250)) + 1]))
        sources = [(ids[i], texts[i]) for i in range(rows - n_dup)] + (prev or [])
        for i in range(n_dup):
            src_id, src = sources[rng.randrange(len(sources))]
            texts.append(edit_words(src, rng, rng.randint(2, 3), vocab))
            truth.append((src_id, ids[rows - n_dup + i]))
        frame = pl.DataFrame({"sample_id": ids, "completion": texts})
        total += frame["completion"].str.len_bytes().sum()
        files.append(folder / f"part-{k:05d}.parquet")
        frame.write_parquet(files[-1])
        prev = sources[: rows - n_dup]
    return files, truth, total


def bench_scale(n: int, shard_rows: int, workers: int, executors: list[str]) -> list[dict]:
    """n documents written once as Parquet shards, then deduplicated on each executor:
    `local` (worker processes) and `ray` (the 2-node local cluster of tests/raycluster.py,
    1 CPU per node; its raylets and workers are this process's descendants, so their
    memory is sampled too)."""
    results = []
    with tempfile.TemporaryDirectory(prefix="dedup-bench-") as tmp:
        t = time.perf_counter()
        # written by a child process, so this one's memory is the dedup's alone
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            files, truth, text_bytes = pool.submit(write_shards, n, shard_rows, Path(tmp)).result()
        disk = sum(p.stat().st_size for p in files) / 2**20
        print(f"[scale] {n:,} docs in {len(files)} Parquet shards ({text_bytes / 2**20:,.0f} MiB of text, "
              f"{disk:,.0f} MiB on disk), written in {time.perf_counter() - t:.0f} s", flush=True)
        for name in executors:
            gc.collect()
            with contextlib.ExitStack() as stack:
                address = None
                if name == "ray":
                    from raycluster import LocalCluster  # tests/raycluster.py

                    address = stack.enter_context(LocalCluster(nodes=2, cpus=1, log_dir=Path(tmp))).address
                peak = stack.enter_context(PeakRss())
                executor = stack.enter_context(make_executor(name, workers, address=address))
                list(executor.map(abs, range(2 * workers)))  # the workers started outside the clock
                survivor, steps = run_protocol(dedup_mod.Dedup(mode="near"), files, executor)
            own, child = round(peak.own), round(peak.child)
            score = score_clusters(lambda x, s=survivor: s.get(x, x), (f"d{i:09d}" for i in range(n)), truth)
            res = {"docs": n, "executor": name, "shards": len(files), "workers": workers,
                   "text_mib": round(text_bytes / 2**20), "disk_mib": round(disk), **steps,
                   "peak_rss_driver_mib": own, "peak_rss_worker_mib": child, **score}
            print(f"[scale] {n:,} docs, {name} executor, {workers} workers: {steps['seconds']:.1f} s (index "
                  f"{steps['index_s']}, resolve {steps['resolve_s']}, mark {steps['mark_s']}); indexes "
                  f"{steps['index_mib']:,} MiB; peak RSS driver {own:,} MiB, largest other process {child:,} MiB "
                  f"(text {res['text_mib']:,} MiB); recall {score['recall']:.4f}, dropped beyond the plant "
                  f"{score['dropped_beyond_plant']}", flush=True)
            results.append(res)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="compare,scale")
    ap.add_argument("--compare-docs", type=int, default=100_000)
    ap.add_argument("--scale-docs", default="1000000", help="comma-separated sizes")
    ap.add_argument("--shard-rows", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--executors", default="local", help="scale: comma-separated, local and/or ray")
    ap.add_argument("--json")
    args = ap.parse_args()
    sections = args.only.split(",")
    summary = {}
    if "compare" in sections:
        summary["compare"] = bench_compare(args.compare_docs, args.workers)
    if "scale" in sections:
        summary["scale"] = [r for n in args.scale_docs.split(",")
                            for r in bench_scale(int(n), args.shard_rows, args.workers, args.executors.split(","))]
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
