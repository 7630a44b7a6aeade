"""The real vLLM CPU engine, offline, driven through the `curate generate` command."""

import json
import os
import signal
import time

import pyarrow.parquet as pq
import pytest

from conftest import GSM8K_TEST
from curate.schema import GENERATION_SCHEMA
from helpers import curate, popen, rows

pytestmark = pytest.mark.slow

FAST = ["--max-tokens", "24", "--no-progress", "--kv-cache-gb", "1"]


def test_generate_rows_manifest_and_resume_is_a_no_op(tiny_model, problems_file, tmp_path):
    out = tmp_path / "run"
    args = ["generate", "--input", problems_file, "--out", out, "--model", tiny_model, "-n", "3", "--shard-rows", "10",
            *FAST]
    r = curate(*args)
    assert "curate generate · complete" in r.stdout
    # the engine's own output (vLLM's log lines, "Triton is installed…") is in the run's log, not on the terminal
    assert r.stderr == ""
    assert "WARNING" in (out / "generate.log").read_text().partition("--- engine output")[2]  # e.g. eager mode on CPU

    df = rows(out)
    assert df.height == 8 * 3
    assert df.columns == GENERATION_SCHEMA.names
    assert pq.read_schema(sorted(out.glob("part-*.parquet"))[0]).equals(GENERATION_SCHEMA, check_metadata=False)
    assert df["sample_id"].n_unique() == 24
    assert sorted(df.group_by("problem_id").len()["len"].to_list()) == [3] * 8
    assert set(df["sample_index"].to_list()) == {0, 1, 2}
    assert set(df["finish_reason"].to_list()) <= {"stop", "length"}
    assert (df["completion_tokens"] <= 24).all() and (df["prompt_tokens"] > 20).all()
    assert df["reference_answer"].to_list()[0] in {"18", "3", "70000", "540", "20", "64", "260", "160"}
    first = df.row(0, named=True)
    assert json.loads(first["prompt"])[0]["role"] == "user"
    assert json.loads(first["sampling"]) == {"n": 3, "temperature": 0.6, "top_p": 0.95, "max_tokens": 24, "seed": 0,
                                             "stop": []}
    assert first["model"] == str(tiny_model) and first["backend"] == "vllm" and first["template"] == "reasoning_chat"

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["counts"]["samples_done"] == 24 and manifest["counts"]["problems"] == 8
    assert manifest["inputs"]["problems"]["sha256"]
    assert manifest["inputs"]["template"]["sha256"] == first["template_sha"]
    assert manifest["engine"]["vllm"] and manifest["versions"]["curate"]
    assert manifest["timings"]["sessions"][0]["output_tokens_per_s"] > 0
    assert "wrote part-00000.parquet" in (out / "generate.log").read_text()

    shards = sorted(p.name for p in out.glob("part-*.parquet"))
    again = curate(*args)  # finished: nothing to do, the engine is not even loaded
    assert sorted(p.name for p in out.glob("part-*.parquet")) == shards
    assert rows(out).equals(df)
    assert "0 this session" in again.stdout

    refused = curate(*[a if a != "0.6" else a for a in args], "--temperature", "0.9", check=False)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"error: {out}: holds a run with a different config (sampling.temperature: 0.6 → 0.9); "
        "re-run with --overwrite to replace it, or choose another --out"]
    assert rows(out).equals(df)


def test_resume_after_sigkill_gives_identical_rows(tiny_model, tmp_path):
    problems = tmp_path / "problems.jsonl"
    problems.write_text("\n".join(GSM8K_TEST.read_text().splitlines()[:40]) + "\n")
    # --top-p 1: a random-weight model's next-token distribution is nearly flat, and which
    # of ~49k almost equal tokens fall outside a top-p 0.95 nucleus hangs on the last bits
    # of batched CPU arithmetic, which differ with the batch a request lands in. Seeded
    # sampling itself does not depend on the batch; the nucleus cut of a flat tail does.
    common = ["generate", "--input", problems, "--model", tiny_model, "-n", "2", "--max-tokens", "48", "--no-progress",
              "--kv-cache-gb", "1", "--shard-rows", "2", "--flush-seconds", "0", "--top-p", "1"]

    whole = tmp_path / "whole"
    curate(*common, "--out", whole)
    expected = rows(whole)
    assert expected.height == 80

    killed = tmp_path / "killed"
    proc = popen(*common, "--out", killed)
    deadline = time.time() + 300
    while not list(killed.glob("part-*.parquet")):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its engine process, mid-run
    proc.wait()
    partial = rows(killed).height
    assert 0 < partial < 80, f"the kill should land mid-run, found {partial} rows"

    curate(*common, "--out", killed)
    resumed = rows(killed)
    assert resumed.height == 80
    assert resumed.select("problem_id", "sample_index").is_unique().all()
    assert resumed.equals(expected), "a resumed run must hold exactly the rows of an uninterrupted one"
    manifest = json.loads((killed / "manifest.json").read_text())
    # the killed session never closed
    assert manifest["status"] == "complete" and len(manifest["timings"]["sessions"]) == 1


def test_r1_zero_raw_text_and_prefill_template(tiny_model, problems_file, tmp_path):
    template = tmp_path / "prefill.jinja"
    template.write_text('{% call message("user") %}{{ problem }}{% endcall %}\n'
                        '{{ message("assistant", "<think>\\n") }}\n')
    out = tmp_path / "prefill"
    curate("generate", "--input", problems_file, "--out", out, "--model", tiny_model, "--template", template,
           "--limit", "2", *FAST)
    df = rows(out)
    prompt = json.loads(df["prompt"][0])
    assert prompt[-1] == {"role": "assistant", "content": "<think>\n"}
    # the model continues inside the prefilled <think>: no closing tag from a random model, so all is reasoning
    for row in df.iter_rows(named=True):
        if "</think>" not in row["completion"]:
            assert row["reasoning"] == row["completion"].strip() and row["answer"] is None

    raw = tmp_path / "raw"
    curate("generate", "--input", problems_file, "--out", raw, "--model", tiny_model, "--template", "r1_zero",
           "--limit", "2", *FAST)
    df = rows(raw)
    assert df["prompt"][0].startswith("A conversation between User and Assistant.")
    assert df["prompt"][0].endswith(". Assistant:")
    assert json.loads(df["sampling"][0])["stop"] == ["</answer>"]
