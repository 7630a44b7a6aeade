"""Does a second replica double generation throughput? `curate generate --executor ray`
with 1 and with 2 CPU replicas on a real 2-node local Ray cluster (1 CPU per node,
tests/raycluster.py), on the same prompts × n with the same seeds (so the same tokens).
Rounds alternate 1 / 2 replicas to spread the noise of a shared machine; the figure is
the ratio of output tokens/s during generation (engine loading excluded: the manifest's
session `output_tokens_per_s`). Both runs' rows are checked to be equal.

    python benchmarks/generate_ray.py [--problems 32] [-n 2] [--max-tokens 128] [--rounds 1] [--model PATH]

Default model: the embedded SmolLM2-135M-Instruct (CPU, fp32, eager).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]
DEFAULT_INPUT = REPO / "curate" / "data" / "gsm8k_test.jsonl"


def generate(args, out: Path, address: str, replicas: int) -> dict:
    cmd = [sys.executable, "-m", "curate", "generate", "--input", args.input, "--limit", str(args.problems),
           "--out", str(out), "-n", str(args.n), "--max-tokens", str(args.max_tokens), "--no-progress",
           "--executor", "ray", "--ray-address", address, "--replicas", str(replicas)]
    if args.model:
        cmd += ["--model", args.model]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    manifest = json.loads((out / "manifest.json").read_text())
    return manifest["timings"]["sessions"][-1] | {"nodes": manifest["engine"]["replica_nodes"]}


def rows(out: Path):
    import polars as pl

    return pl.read_parquet(sorted(out.rglob("*.parquet"))).select("sample_id", "completion").sort("sample_id")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", default=str(DEFAULT_INPUT))
    ap.add_argument("--problems", type=int, default=32)
    ap.add_argument("-n", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a 127.0.0.1 test cluster (see tests/conftest.py)

    from raycluster import LocalCluster

    work = Path(tempfile.mkdtemp(prefix="curate-genray-"))
    results: dict[int, list[dict]] = {1: [], 2: []}
    try:
        with LocalCluster(nodes=2, cpus=1, log_dir=work) as cluster:
            for r in range(args.rounds):
                for replicas in (1, 2):
                    out = work / f"r{r}-x{replicas}"
                    s = generate(args, out, cluster.address, replicas)
                    results[replicas].append(s)
                    print(f"round {r} replicas {replicas}: {s['output_tokens_per_s']} tok/s "
                          f"({s['completion_tokens']} tokens in {s['generate_seconds']} s; "
                          f"load {s['load_seconds']} s; {s['nodes']} node(s))", flush=True)
                assert rows(work / f"r{r}-x1").equals(rows(work / f"r{r}-x2")), "1 and 2 replicas gave different rows"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = {k: max(s["output_tokens_per_s"] for s in v) for k, v in results.items()}
    print(json.dumps({"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                      "problems": args.problems, "n": args.n, "max_tokens": args.max_tokens,
                      "tokens_per_s_1_replica": best[1], "tokens_per_s_2_replicas": best[2],
                      "ratio_2_over_1": round(best[2] / best[1], 2)}, indent=1))


if __name__ == "__main__":
    main()
