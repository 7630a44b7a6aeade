"""The wheel installs into a fresh venv and works there; the CLI starts light."""

import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

R1_ZERO_START = "A conversation between User and Assistant."


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_runs(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", dist, REPO],
                   check=True, capture_output=True)
    wheel = next(dist.glob("curate-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for expected in ("curate/cli.py", "curate/filters/__init__.py", "curate/train/__init__.py",
                     "curate/prompts/r1_zero.jinja", "curate/prompts/examples/cold_start_math.jsonl",
                     "curate/data_cards/README.md", "curate/data/gsm8k_sample.jsonl", "curate/data/LICENSE-gsm8k",
                     "curate/train/recipes/r1-distill-qwen-1.5b.yaml", "curate/train/accelerate/zero3.yaml",
                     "curate/train/accelerate/fsdp.yaml", "curate/recipes/r1.yaml", "curate/recipes/distill.yaml",
                     "curate/recipes/r1_zero.yaml", "curate/data/general_chat.jsonl"):
        assert expected in names, expected
    assert not [n for n in names if n.startswith(("filters/", "train/", "prompts/", "tests/"))]

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    pip = subprocess.run([venv / "bin" / "pip", "install", "--quiet", wheel], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-2000:]
    exe = venv / "bin" / "curate"
    help_ = subprocess.run([exe, "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert help_.returncode == 0 and "generate" in help_.stdout and "templates" in help_.stdout
    rendered = subprocess.run([exe, "templates", "render", "r1_zero"], capture_output=True, text=True, cwd=tmp_path)
    assert rendered.returncode == 0 and rendered.stdout.startswith(R1_ZERO_START), rendered.stderr
    where = subprocess.run([venv / "bin" / "python", "-c",
                            "import curate.filters, curate.train; print(curate.filters.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert str(venv) in where.stdout, where.stderr


def test_help_imports_no_heavy_packages_and_starts_fast():
    code = ("import sys, time; t = time.perf_counter()\n"
            "from curate.cli import cli\n"
            "try:\n    cli(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'vllm', 'transformers', 'datasets', 'polars', 'pyarrow')"
            " if m in sys.modules]\n"
            "print('HEAVY', heavy, time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("HEAVY"))
    assert line.startswith("HEAVY []"), line
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "curate", "--help"], check=True, capture_output=True)
    assert time.perf_counter() - start < 1.0
