"""The Python API is the command line: the README's two quick starts (shell and Python)
make identical rows; every option of every command comes from its options dataclass,
with its help, and `help(curate.<function>)` lists them; a plain checkout that was never
installed says so in one line."""

import dataclasses
import pydoc
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import polars as pl
import pytest

import curate
from curate import api
from curate.cli import cli
from curate.options import flat, given
from helpers import CURATE, env

REPO = Path(__file__).resolve().parent.parent
PROBLEMS = REPO / "curate" / "data" / "gsm8k_sample.jsonl"
COMMANDS = {"generate": ["generate"], "filter": ["filter"], "select": ["select"], "mix": ["mix"], "card": ["card"],
            "publish": ["publish"], "report": ["report"], "train_sft": ["train", "sft"],
            "train_grpo": ["train", "grpo"], "evaluate": ["eval"], "run_recipe": ["run"]}


def readme_block(language: str, first_line: str) -> str:
    """The README's fenced `language` block that starts with `first_line`."""
    blocks = re.findall(rf"```{language}\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    return next(b for b in blocks if b.startswith(first_line))


def test_the_readme_quick_starts_run_and_make_the_same_rows(tiny_model, tmp_path):
    """The shell block through `python -m curate`, the Python block through exec, each in
    its own folder; the embedded model is swapped for the tiny random one, and its 256
    tokens per sample for 16 (a random model never stops, and the machine is small)."""
    shell = readme_block("bash", "curate generate --input problems.jsonl --limit 4")
    python = readme_block("python", "import curate\n")
    assert "--max-tokens 256" in shell and "max_tokens=256" in python
    shell = shell.replace("--max-tokens 256", "--max-tokens 16")
    python = python.replace("max_tokens=256", "max_tokens=16")
    for side in ("cli", "api"):
        (tmp_path / side).mkdir()
        shutil.copy(PROBLEMS, tmp_path / side / "problems.jsonl")
    for line in shell.strip().splitlines():
        args = shlex.split(line)[1:] + (["--model", str(tiny_model)] if line.startswith("curate generate") else [])
        r = subprocess.run([*CURATE, *args, "--no-progress"], cwd=tmp_path / "cli", env=env(), capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, f"{line}\n{r.stderr[-3000:]}"
    code = python.replace("curate.generate(", f"curate.generate(model={str(tiny_model)!r}, ")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path / "api")
        scope: dict = {}
        exec(compile(code, "README.md", "exec"), scope)
    mixture = scope["mixture"]
    assert isinstance(mixture, curate.Result) and mixture.stage == "mix" and mixture.status == "complete"
    assert scope["run"].counts["samples_done"] == 8 and scope["chosen"].counts["selected"] == 8

    def table(side: str, stage: str, pattern: str) -> pl.DataFrame:
        files = sorted((tmp_path / side / "runs" / "quick" / stage).glob(pattern))
        assert files, (side, stage, pattern)
        frame = pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")
        here = str(tmp_path / side)  # the runs' own folders (lineage columns) differ by design
        frame = frame.with_columns(pl.col(pl.String).str.replace_all(here, "<dir>", literal=True))
        return frame.sort(frame.columns[:3])

    for stage, pattern in (("generate", "part-*.parquet"), ("filter", "kept/*.parquet"),
                           ("select", "data/*.parquet"), ("mix", "data/*.parquet")):
        cli_rows, api_rows = table("cli", stage, pattern), table("api", stage, pattern)
        assert cli_rows.height > 0 and cli_rows.columns == api_rows.columns, stage
        assert [c for c in cli_rows.columns if not cli_rows[c].equals(api_rows[c])] == [], stage


@pytest.mark.parametrize("function", list(COMMANDS))
def test_every_option_is_on_the_command_line_with_its_help(function):
    cls = api.options_class(function)
    group, *names = [cli, *COMMANDS[function]]
    ctx = click.Context(cli)
    for name in names:
        group = group.get_command(ctx, name)
    text = group.get_help(click.Context(group, info_name=" ".join(COMMANDS[function])))
    params = {p.name: p for p in group.get_params(ctx)}
    for x in flat(cls):
        assert x.meta.get("help"), f"{cls.__name__}.{x.field.name} has no help"
        if not x.on_cli:
            continue
        assert x.name in params, f"{function}: no command-line option for {x.name}"
        if not x.meta.get("argument") and not x.meta.get("hidden"):
            assert x.option in text and x.meta["help"][:30].split("\n")[0] in " ".join(text.split()), (function, x.name)


@pytest.mark.parametrize("function", list(COMMANDS))
def test_help_of_each_function_lists_its_arguments(function):
    text = pydoc.render_doc(getattr(curate, function), renderer=pydoc.plaintext)
    assert api.SUMMARIES[function].split("\n")[0] in text
    for x in flat(api.options_class(function)):
        assert f"    {x.name} (" in text, (function, x.name)


def test_sft_defaults_come_from_the_dataclass_and_flags_not_given_leave_the_recipe_alone():
    from curate.train.sft import SFTOptions, resolve

    cmd = cli.get_command(click.Context(cli), "train").get_command(click.Context(cli), "sft")
    text = " ".join(cmd.get_help(click.Context(cmd, info_name="sft")).split())
    assert f"[default: {SFTOptions.epochs}]" in text and f"[default: {SFTOptions.lr}]" in text
    ctx = cmd.make_context("sft", ["--config", "r1-distill-qwen-1.5b", "--data", "runs/mix", "--lr", "3e-5"])
    options = given(ctx, ctx.params)
    assert options == {"config": "r1-distill-qwen-1.5b", "data": "runs/mix", "lr": 3e-5}
    cfg = resolve(options)
    recipe_only = resolve({"config": "r1-distill-qwen-1.5b", "data": "runs/mix"})
    assert cfg["lr"] == 3e-5 and cfg["epochs"] == recipe_only["epochs"] and cfg["student"] == recipe_only["student"]


def test_grpo_defaults_are_r1s_once():
    from curate.train.grpo import R1_DEFAULTS, GRPOOptions

    fields = {f.name: f.default for f in dataclasses.fields(GRPOOptions)}
    for key in ("num_generations", "learning_rate", "beta", "epsilon", "temperature", "loss_type"):
        assert fields[key] == R1_DEFAULTS[key]
    assert "[default: 0.001]" in " ".join(subprocess.run([sys.executable, "-m", "curate", "train", "grpo", "--help"],
                                                         capture_output=True, text=True, check=True).stdout.split())


def test_bad_input_raises_curate_error_and_bad_arguments_type_error(tmp_path):
    with pytest.raises(curate.CurateError, match="no-such"):
        curate.filter(input=str(tmp_path / "no-such"), out=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(TypeError, match="unknown option 'nmu_samples'"):
        curate.generate(input="p.jsonl", out="o", nmu_samples=2)
    with pytest.raises(TypeError, match="missing required option 'out'"):
        curate.select(input="x")


def test_a_group_of_options_is_given_flat_as_an_object_or_as_a_dict():
    from curate.generate import EngineOptions, GenerateOptions
    from curate.options import build

    flat_ = build(GenerateOptions, input="p.jsonl", out="o", base_url="http://127.0.0.1:9/v1", concurrency=3)
    as_dict = build(GenerateOptions, input="p.jsonl", out="o", engine={"base_url": "http://127.0.0.1:9/v1",
                                                                     "concurrency": 3})
    as_object = build(GenerateOptions, input="p.jsonl", out="o",
                      engine=EngineOptions(base_url="http://127.0.0.1:9/v1", concurrency=3))
    assert flat_ == as_dict == as_object
    assert as_dict.engine.concurrency == 3 and as_dict.engine.base_url == "http://127.0.0.1:9/v1"
    with pytest.raises(TypeError, match="concurency"):
        build(GenerateOptions, input="p.jsonl", out="o", engine={"concurency": 3})


def test_the_function_names_stay_functions_after_the_stage_modules_load():
    import importlib

    module = importlib.import_module("curate.mix")
    assert callable(curate.mix) and curate.mix is api.mix and module.MixOptions.__module__ == "curate.mix"
    from curate import generate

    assert generate is api.generate


def test_import_curate_is_light():
    code = ("import sys, curate\n"
            "print([m for m in ('torch', 'vllm', 'transformers', 'datasets', 'polars', 'pyarrow', 'click') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_checkout_that_was_never_installed_says_so_in_one_line(tmp_path):
    """Without the install's mapping, curate.filters (the checkout's filters/) is missing:
    one line that names the fix, exit 2, from Python and from the command line."""
    shutil.copytree(REPO / "curate", tmp_path / "curate", ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import sys\n"
            "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in getattr(f, '__module__', '')]\n"
            "import curate\n"
            "assert curate.__file__.startswith(sys.argv[1]), curate.__file__\n"
            "try:\n    import curate.filters\nexcept ModuleNotFoundError as e:\n    print('python:', e)\n"
            "from curate.cli import main\n"
            "sys.argv = ['curate', 'filter', '--input', 'x', '--out', 'y']\n"
            "main()\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "python: no module curate.filters: the checkout's filters/ folder" in r.stdout
    assert r.stderr.strip().count("\n") == 0 and "pip install -e ." in r.stderr and "Traceback" not in r.stderr
