"""How `curate report` copes with a big run: time to build the page, its size, and the
time headless Chromium takes to load it and run its script.

Builds a generate-shaped run of N samples (GSM8K test problems, R1-style traces from
tests/traces.py: 1 in 4 with a wrong answer, 1 in 50 with a Chinese sentence), runs the
real chain (format, length, math, language) over it, then reports on the filter run and
on the generate run (which has no language scores: language ID on --language-sample rows).

    python benchmarks/report.py --samples 20000
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from curate.schema import GENERATION_SCHEMA  # noqa: E402
from curate.store import RunStore  # noqa: E402
from traces import gsm8k, long_trace  # noqa: E402

ZH = "首先，我们需要把所有的数量加起来，然后再检查一遍结果是否正确。"


def build(root: Path, n: int, per_problem: int = 8) -> None:
    problems = gsm8k(1319, start=0)
    store = RunStore(root, "generate")
    store.open(overwrite=False)
    rows = []
    for i in range(n):
        p = problems[(i // per_problem) % len(problems)]
        k = i % per_problem
        final = p["final"] if i % 4 else str(int(float(p["final"].replace(",", ""))) + 1)
        completion = long_trace(p["question"], p["steps"], final, extra=ZH if i % 50 == 7 else "")
        pid = f"gsm-{(i // per_problem):05d}"
        rows.append({"problem_id": pid, "sample_index": k, "sample_id": f"{pid}:teacher:{k}", "source": "gsm8k",
                     "domain": "math", "problem": p["question"], "reference_answer": p["final"], "tests": None,
                     "template": "reasoning_chat", "template_sha": "0" * 64, "prompt": "[]", "model": "teacher",
                     "backend": "vllm", "sampling": "{}", "completion": completion, "reasoning": None, "answer": None,
                     "final_answer": None, "finish_reason": "stop", "prompt_tokens": 100,
                     "completion_tokens": len(completion) // 4, "error": None, "extra": "{}"})
        if len(rows) == 5000:
            store.write_shard(pa.Table.from_pylist(rows, schema=GENERATION_SCHEMA))
            rows = []
    if rows:
        store.write_shard(pa.Table.from_pylist(rows, schema=GENERATION_SCHEMA))
    store.write_manifest({"config": {}, "status": "complete"})
    store.close()


def timed(args: list[str]) -> float:
    t0 = time.time()
    subprocess.run(args, check=True, capture_output=True)
    return time.time() - t0


def chromium_load(page: Path) -> float | None:
    exe = shutil.which("chromium")
    if not exe:
        return None
    with tempfile.TemporaryDirectory() as profile:
        t0 = time.time()
        r = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                            "--disable-background-networking", "--disable-component-update", "--disable-sync",
                            f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
                           capture_output=True, text=True, timeout=300)
        assert 'id="current-problem"' in r.stdout, "the browser did not render"
        return time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=20000)
    a = ap.parse_args()
    curate = [sys.executable, "-m", "curate"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build(root / "generate", a.samples)
        filter_s = timed([*curate, "filter", "--input", root / "generate", "--out", root / "filter",
                          "--filters", "format,length,math,language", "--no-progress"])
        funnel = json.loads((root / "filter" / "manifest.json").read_text())["funnel"]
        print(f"run: {a.samples:,} samples, {a.samples // 8:,} problems; filter {filter_s:.1f} s; "
              f"kept {funnel['kept']:,}, rejected {funnel['rejected']:,}")
        for name, extra in (("filter", []), ("generate", [])):
            page = root / f"{name}.html"
            seconds = timed([*curate, "report", root / name, "--out", page, "--no-progress", *extra])
            load = chromium_load(page)
            print(f"report on the {name} run: {seconds:.1f} s, page {page.stat().st_size / 1e6:.2f} MB, "
                  f"Chromium load + script {'-' if load is None else f'{load:.1f} s'}")


if __name__ == "__main__":
    main()
