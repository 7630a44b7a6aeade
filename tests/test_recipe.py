"""`curate run RECIPE`: the shipped recipes plan; bad recipes are one line naming FILE:LINE
(exit 2, nothing written); re-running skips complete stages, re-runs a changed stage and
what follows it; `--smoke` runs `distill` and `r1` end to end on CPU (real generation,
filters, TRL training, eval), and a run killed with SIGKILL resumes to the same outputs."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest

from curate.errors import CurateError
from curate.recipe import plan, recipe_path, shipped
from helpers import CURATE, curate, env


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def refuse(tmp_path, recipe, *args) -> str:
    """`curate run` refuses: exit 2, one line, no traceback, nothing written."""
    out = tmp_path / "out"
    r = curate("run", recipe, "--out", out, *args, check=False, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not out.exists()
    return lines[0].removeprefix("error: ")


def refused(recipe: Path, **kwargs) -> str:
    with pytest.raises(CurateError) as e:
        plan(str(recipe), recipe.parent / "out", **kwargs)
    assert "\n" not in str(e.value)
    return str(e.value)


# -- the shipped recipes --------------------------------------------------------------------


def test_shipped_recipes_plan(tmp_path):
    """Every shipped recipe plans as it is and with --smoke (every option name and value
    checked against the options dataclasses), and its stages follow the data."""
    assert shipped() == ["distill", "r1", "r1_zero"]
    distill = plan("distill", tmp_path / "d")
    assert [(s.name, s.command) for s in distill.stages] == [
        ("generate", "generate"), ("filter", "filter"), ("select", "select"), ("mix", "mix"), ("sft", "train sft"),
        ("eval", "eval")]
    assert [s.needs for s in distill.stages] == [[], ["generate"], ["filter"], ["select"], ["mix"], ["sft"]]
    eval_ = distill.stage("eval")
    assert eval_.values["model"] == str(tmp_path / "d" / "sft") and eval_.values["benchmarks"] == "math500,gsm8k"
    assert all(s.state == "run" for s in distill.stages)
    assert not (tmp_path / "d").exists()  # planning writes nothing

    r1 = plan("r1", tmp_path / "r1", sets={"general": "general.jsonl"})
    names = [s.name for s in r1.stages]
    assert names == ["cold_generate", "cold_filter", "cold_select", "cold_sft", "reasoning_rl", "rs_generate",
                     "rs_filter", "rs_select", "rs_mix", "rs_sft", "final_rl"]
    assert r1.stage("cold_generate").values["template"] == "cold_start_fewshot"
    assert r1.stage("rs_generate").values["model"] == str(tmp_path / "r1" / "reasoning_rl" / "model")
    assert r1.stage("rs_mix").values["sources"] == [f"reasoning={tmp_path / 'r1' / 'rs_select'}:600000",
                                                   "general=general.jsonl:200000"]
    assert r1.stage("reasoning_rl").values["rewards"] == "accuracy,format,language"
    assert r1.stage("rs_sft").values["epochs"] == 2.0

    zero = plan("r1_zero", tmp_path / "z", smoke=True)
    grpo = zero.stages[0]
    assert grpo.values["template"] == "r1_zero" and grpo.values["policy"] == str(tmp_path / "z" / ".tiny-model")
    assert zero.uses_tiny_model
    for name in shipped():
        plan(name, tmp_path / name, smoke=True)


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    r = curate("run", "distill", "--out", out, "--smoke", "--dry-run", "--set", "samples=1")
    lines = r.stdout.splitlines()
    assert lines[0].startswith("recipe distill (") and lines[0].endswith(f"--smoke -> {out}")
    assert any(line.strip() == "5. sft       train sft   runs <- mix" for line in lines), r.stdout
    assert "curate generate --input " in r.stdout and "--num-samples 1 --max-tokens 32" in r.stdout
    assert "curate eval --out '$OUT/eval'" in r.stdout and "--model '$OUT/sft'" in r.stdout
    assert lines[-1] == "dry run: nothing run, nothing written"
    assert not out.exists()


# -- bad recipes: one line, FILE:LINE -----------------------------------------------------------

RECIPE = """\
vars:
  samples: 2
  problems: problems.jsonl
stages:
  generate:
    command: generate
    input: ${problems}
    num_samples: ${samples}
  filter:
    command: filter
    input: ${stages.generate.out}
    filters: dedup
"""


def test_errors_name_file_and_line(tmp_path):
    def bad(old: str, new: str, **kwargs) -> str:
        path = write(tmp_path / "r.yaml", RECIPE.replace(old, new))
        return refused(path, **kwargs)

    f = tmp_path / "r.yaml"
    assert bad("    num_samples: ${samples}", "    num_sample: 2") == (
        f"{f}:8: stage generate: `generate` has no option `num_sample`; did you mean `num_samples`?")
    assert bad("  samples: 2", "  samples: many") == (
        f"{f}:8: stage generate: num_samples: expected an integer, got 'many'")
    assert bad("  samples: 2", "  samples: 0") == f"{f}:8: stage generate: num_samples: must be >= 1, got 0"
    assert bad("    filters: dedup", "    workers: two") == (
        f"{f}:12: stage filter: workers: expected an integer, got 'two'")
    assert bad("${stages.generate.out}", "${stages.gen.out}") == (
        f"{f}:11: `${{stages.gen.out}}`: no stage `gen` (stages: generate, filter)")
    assert bad("${problems}", "${problem}") == f"{f}:7: `${{problem}}`: no such variable (vars: samples, problems)"
    assert bad("command: filter", "command: filtre") == (
        f"{f}:10: stage filter: `filtre`; choose one of generate, filter, select, mix, card, report, train sft, "
        "train grpo, eval")
    assert bad("    filters: dedup", "    out: elsewhere") == (
        f"{f}:12: stage filter: `out` is set by curate run (OUT/filter)")
    assert bad("    input: ${problems}\n", "") == f"{f}:5: stage generate: the option `input` is required"
    assert bad("  samples: 2\n", "  samples: 2\n  samples: 3\n") == f"{f}:3: `samples` is given twice"
    assert bad("    num_samples: ${samples}", "    num_samples: [2").startswith(f"{f}:9:9: bad YAML:")
    assert bad("    input: ${problems}", "    input: ${stages.filter.out}") == (
        f"{f}:5: the stages refer to each other in a loop (generate -> filter -> generate)")
    assert bad("vars:", "varz:") == f"{f}:1: unknown key `varz` (a recipe has description, vars, smoke, stages)"
    assert bad("  samples: 2", "  samples: 2", sets={"sample": 3}) == (
        f"--set sample: the recipe {f} has no such variable (vars: samples, problems)")
    assert bad("  samples: 2", "  samples: 2", sets={"samples": "x"}) == (
        f"--set samples=x: expected an integer like the recipe's 2 ({f}:2)")
    assert bad("  samples: 2", "  samples: 2", smoke=True) == (
        f"{f}: no `smoke:` block, so --smoke cannot scale this recipe down")
    nope = tmp_path / "nope.yaml"
    assert refused(nope).startswith(f"{nope}: no such recipe file or shipped recipe")


def test_cli_refuses_in_one_line(tmp_path):
    path = write(tmp_path / "r.yaml", RECIPE.replace("    filters: dedup", "    filters: 7\n    chain: [a, b]"))
    assert refuse(tmp_path, path) == f"{path}:13: stage filter: chain: expected text, got ['a', 'b']"
    assert refuse(tmp_path, "distill", "--set", "samples=two") == (
        f"--set samples=two: expected an integer like the recipe's 2 ({recipe_path('distill')}:23)")


def test_a_filter_stage_chain_is_read_when_the_recipe_is_planned(tmp_path):
    """A recipe names a chain file (or a list of filters), not filter parameters: the file is
    read when the recipe is planned, so a missing file, bad YAML, an unknown filter or an
    unknown parameter is refused (naming the recipe's line and the chain file's line and
    column) before any stage runs."""
    chain = tmp_path / "chain.yaml"
    path = write(tmp_path / "r.yaml", RECIPE.replace("    filters: dedup", f"    chain: {chain}"))
    prefix = f"{path}:12: stage filter: chain: {chain}"
    assert refused(path) == f"{prefix}: no such chain file"
    for text, fault in [("filters:\n  - format\n  - language: {no_such_param: 1}\n",
                         ":3:16: filter language: unknown parameter 'no_such_param' (it has lang,"),
                        ("filters:\n  - nope\n", ":2:5: unknown filter 'nope'; available: "),
                        ("filters: [format\n", ":2:1: bad YAML: "),
                        ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
                            f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n" for p, n in zip("abcdef", "bcdefg")),
                         ":5:36: bad YAML: the aliases expand to more than 100,000 values")]:
        chain.write_text(text)
        assert refused(path).startswith(prefix + fault)
    chain.write_text("filters:\n  - format\n  - length: {max_tokens: 64}\n")
    assert plan(str(path), tmp_path / "out").stage("filter").values["chain"] == str(chain)
    assert refused(write(tmp_path / "r.yaml", RECIPE.replace("filters: dedup", "filters: dedup,nope"))) == (
        f"{path}:12: stage filter: filters: unknown filter 'nope'; available: format, length, math, code, language, "
        "readability, dedup, decontam")


def test_a_bad_parameter_value_in_a_filter_stage_chain_names_the_chain_file(tmp_path):
    """A parameter's value is checked when the stage builds its filters: `curate run` stops
    there with the chain file's FILE:LINE:COL in one line, exit 2."""
    (tmp_path / "rows.jsonl").write_text('{"completion": "<think>\\nx\\n</think>\\n\\n\\\\boxed{1}"}\n')
    chain = write(tmp_path / "chain.yaml", "filters:\n  - format\n  - math: {timeout: abc}\n")
    path = write(tmp_path / "r.yaml", f"stages:\n  filter:\n    command: filter\n    input: {tmp_path / 'rows.jsonl'}\n"
                                      f"    chain: {chain}\n")
    out = tmp_path / "out"
    r = curate("run", path, "--out", out, "--no-progress", check=False, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr == f"error: {chain}:3:12: filter math: parameter timeout must be float, got 'abc'\n"
    assert not (out / "filter").exists()
    assert json.loads((out / "recipe.json").read_text())["stages"]["filter"]["status"] == "failed"


# -- resume, skip, re-run ------------------------------------------------------------------------


def traces(path: Path) -> Path:
    """Twelve R1-style traces for four problems (two exact duplicates), as JSONL."""
    rows = []
    for p in range(4):
        for i in range(3):
            words = "add them" if (p, i) == (0, 1) else f"step {p} {i}"
            completion = f"<think>\nI {words} up carefully.\n</think>\n\nThe answer is \\boxed{{{p + i}}}."
            rows.append({"problem_id": f"p{p}", "sample_id": f"p{p}:{i}", "problem": f"What is {p} + {i}?",
                         "completion": completion,
                         "reference_answer": str(p + i), "domain": "math"})
    rows[0]["completion"] = rows[1]["completion"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


DATA_RECIPE = """\
vars:
  traces: traces.jsonl
  rows: 6
  policy: all
stages:
  filter:
    command: filter
    input: ${traces}
    filters: dedup
    workers: 1
  select:
    command: select
    input: ${stages.filter.out}
    policy: ${policy}
  mix:
    command: mix
    sources: ["reasoning=${stages.select.out}:${rows}"]
    workers: 1
"""


def updated(out: Path) -> dict:
    """When each stage's manifest was last written (to the nanosecond: its `updated` field
    has whole seconds, and a re-run can end within the same second)."""
    return {d.name: (d / "manifest.json").stat().st_mtime_ns for d in sorted(out.iterdir())
            if (d / "manifest.json").is_file()}


def test_rerun_skips_complete_stages_and_reruns_what_changed(tmp_path):
    """Through the Python API: the second run runs nothing; a changed variable re-runs
    the stage that uses it and everything after it (--overwrite), not what comes before."""
    import curate

    recipe = write(tmp_path / "data.yaml", DATA_RECIPE.replace("traces.jsonl", str(traces(tmp_path / "t.jsonl"))))
    out = tmp_path / "out"
    said = []
    first = curate.run_recipe(recipe=str(recipe), out=str(out), progress=False, echo=said.append)
    state = first.manifest
    assert state["status"] == "complete" and list(state["stages"]) == ["filter", "select", "mix"]
    assert all(s["status"] == "complete" for s in state["stages"].values())
    assert state["stages"]["filter"]["counts"] == {"rows_in": 12, "kept": 11, "rejected": 1}
    assert state["vars"]["rows"] == 6 and json.loads((out / "recipe.json").read_text())["status"] == "complete"
    mix = pl.read_parquet(out / "mix" / "data" / "train-00000-of-00001.parquet")
    assert mix.height == 6
    before = updated(out)

    said.clear()
    curate.run_recipe(recipe=str(recipe), out=str(out), progress=False, echo=said.append)
    assert [line for line in said if line.startswith("[")] == [
        "[1/3] filter: complete, skipped", "[2/3] select: complete, skipped", "[3/3] mix: complete, skipped"]
    assert updated(out) == before

    dry = curate.run_recipe(recipe=str(recipe), out=str(out), sets={"policy": "one"}, dry_run=True)
    assert [s.state for s in dry.plan.stages] == ["complete", "rerun", "rerun"]
    said.clear()
    curate.run_recipe(recipe=str(recipe), out=str(out), sets={"policy": "one", "rows": 4}, progress=False,
                      echo=said.append)
    after = updated(out)
    assert after["filter"] == before["filter"] and after["select"] != before["select"] and after["mix"] != before["mix"]
    assert json.loads((out / "select" / "manifest.json").read_text())["config"]["policy"] == "one"
    assert pl.read_parquet(out / "mix" / "data" / "train-00000-of-00001.parquet").height == 4


# -- --smoke end to end (slow) -----------------------------------------------------------------


def outputs(out: Path) -> dict:
    """What a distill run made: the mixture's rows, the trained weights' bytes, the eval results."""
    import hashlib

    mix = pl.read_parquet(sorted((out / "mix" / "data").glob("*.parquet"))).sort("sample_id")
    results = json.loads((out / "eval" / "results.json").read_text())["results"]
    return {"mix": mix.select("sample_id", "messages").to_dicts(),
            "model": hashlib.sha256((out / "sft" / "model.safetensors").read_bytes()).hexdigest(),
            "eval": {b: {k: r[k] for k in ("problems", "samples", "pass@1", "maj@k", "mean_completion_tokens")}
                     for b, r in results.items()}}


@pytest.fixture(scope="module")
def distill_smoke(tmp_path_factory) -> Path:
    """`curate run distill --smoke`, uninterrupted, as a user types it."""
    out = tmp_path_factory.mktemp("distill") / "out"
    r = curate("run", "distill", "--out", out, "--smoke", "--no-progress", timeout=900)
    assert "distill: 6 of 6 stages complete" in r.stdout, r.stdout + r.stderr[-2000:]
    return out


@pytest.mark.slow
def test_distill_smoke_end_to_end(distill_smoke):
    out = distill_smoke
    state = json.loads((out / "recipe.json").read_text())
    assert state["smoke"] and state["status"] == "complete"
    assert {n: s["status"] for n, s in state["stages"].items()} == dict.fromkeys(
        ["generate", "filter", "select", "mix", "sft", "eval"], "complete")
    gen = json.loads((out / "generate" / "manifest.json").read_text())
    assert gen["counts"]["samples_done"] == 8
    assert gen["config"]["model"] == "SmolLM2-135M-Instruct"  # the embedded teacher
    assert gen["command"][:3] == ["curate", "generate", "--input"]  # the equivalent command line, recorded
    sft = json.loads((out / "sft" / "manifest.json").read_text())
    assert sft["status"] == "complete" and sft["counts"]["steps"] == 1 and sft["student"] == str(out / ".tiny-model")
    results = json.loads((out / "eval" / "results.json").read_text())
    assert set(results["results"]) == {"math500", "gsm8k"} and results["k"] == 2
    assert all(r["problems"] == 2 and r["samples"] == 4 for r in results["results"].values())
    # again: everything is complete, nothing runs
    r = curate("run", "distill", "--out", out, "--smoke", "--no-progress")
    assert r.stdout.count("complete, skipped") == 6


@pytest.mark.slow
def test_distill_smoke_killed_and_resumed_gives_the_same_outputs(distill_smoke, tmp_path):
    """SIGKILL to the whole process group while a stage runs (the SFT), then the same
    command again: the run finishes, and its mixture, trained weights and eval results
    are those of the uninterrupted run."""
    out = tmp_path / "out"
    args = [*CURATE, "run", "distill", "--out", str(out), "--smoke", "--no-progress"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env(),
                            start_new_session=True)
    try:
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:  # the SFT's own session has begun
            if _state(out / "sft", "manifest.json").get("status") == "running":
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before the SFT stage started"
        # at once: on a quiet machine the one-step smoke SFT ends within half a second (the
        # window after its last checkpoint is pinned by tests/test_train_sft.py)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    state = _state(out)
    assert state["status"] == "running" and state["stages"]["sft"]["status"] == "running"  # what a kill leaves
    r = curate("run", "distill", "--out", out, "--smoke", "--no-progress", timeout=900)
    assert "[5/6] sft (resumes)" in r.stdout and "[4/6] mix: complete, skipped" in r.stdout
    assert outputs(out) == outputs(distill_smoke)


def _state(out: Path, name: str = "recipe.json") -> dict:
    try:
        return json.loads((out / name).read_text())
    except (OSError, ValueError):
        return {}


@pytest.mark.slow
def test_r1_smoke_end_to_end(tmp_path):
    """The four R1 stages: cold-start SFT, GRPO, rejection sampling from the GRPO policy
    mixed with general data and SFT, final GRPO."""
    out = tmp_path / "out"
    r = curate("run", "r1", "--out", out, "--smoke", "--no-progress", timeout=900)
    assert "r1: 11 of 11 stages complete" in r.stdout, r.stdout + r.stderr[-2000:]
    cold = json.loads((out / "cold_generate" / "manifest.json").read_text())
    assert cold["config"]["template"]["name"] == "cold_start_fewshot" and cold["config"]["examples_sha256"]
    rs = json.loads((out / "rs_generate" / "manifest.json").read_text())
    assert rs["config"]["model"] == str(out / "reasoning_rl" / "model")  # sampled from the stage-2 policy
    mix = json.loads((out / "rs_mix" / "manifest.json").read_text())
    assert [(s["name"], s["delivered"]) for s in mix["sources"]] == [("reasoning", 2), ("general", 2)]
    for name in ("reasoning_rl", "final_rl"):
        grpo = json.loads((out / name / "manifest.json").read_text())
        assert grpo["status"] == "complete" and grpo["steps"] == 1
        assert set(grpo["rewards"]) == {"accuracy", "format", "language"}
    final = json.loads((out / "final_rl" / "manifest.json").read_text())
    assert final["config"]["policy"] == str(out / "rs_sft")
