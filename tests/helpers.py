"""Run the real `curate` command line in a subprocess, as a user would."""

import os
import subprocess
import sys
from pathlib import Path

import polars as pl

from curate.store import read_run

CURATE = [sys.executable, "-m", "curate"]


def env(**extra) -> dict:
    e = dict(os.environ)
    e.update(HF_HUB_OFFLINE="1", VLLM_LOGGING_LEVEL="WARNING", TOKENIZERS_PARALLELISM="false", **extra)
    return e


def curate(*args, timeout=600, check=True, extra_env=None) -> subprocess.CompletedProcess:
    r = subprocess.run([*CURATE, *map(str, args)], capture_output=True, text=True, env=env(**(extra_env or {})),
                       timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"curate {' '.join(map(str, args))} exited {r.returncode}\n{r.stderr[-3000:]}")
    return r


def popen(*args) -> subprocess.Popen:
    return subprocess.Popen([*CURATE, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env(), start_new_session=True)


def rows(run_dir: Path) -> pl.DataFrame:
    return read_run(run_dir)
