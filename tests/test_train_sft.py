"""`curate train sft` end to end on CPU: real TRL steps on tiny random-weight Qwen2 and
Llama students (SmolLM2's tokenizer) over the mixture `curate mix` builds, the lint's
refusals through the CLI (exit 2, nothing written), resume, recipes, and the
`accelerate launch` line, printed and run."""

import json
import shlex
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import GSM8K_TEST
from curate.cli import cli
from curate.store import locked
from curate.train import sft
from helpers import curate


def assert_generates(model, tok, max_new_tokens: int = 6) -> None:
    """The trained model answers a chat prompt with new tokens."""
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 2?"}], add_generation_prompt=True,
                                     return_tensors="pt", return_dict=True)
    assert (model.generate(**prompt, max_new_tokens=max_new_tokens, do_sample=False).shape[1]
            > prompt["input_ids"].shape[1])


def run_cli(*args):
    """The CLI in this process (refusals come before any training, so this is cheap)."""
    return CliRunner().invoke(cli, ["train", "sft", *map(str, args)])


@pytest.fixture(scope="module")
def reasoning_jsonl(tmp_path_factory) -> Path:
    """12 GSM8K test problems (MIT, Copyright (c) 2021 OpenAI) as chat rows whose assistant
    turn is `<think>` + the reference solution + the answer: rows with real reasoning."""
    path = tmp_path_factory.mktemp("sft-data") / "gsm8k_messages.jsonl"
    lines = []
    for line in GSM8K_TEST.read_text().splitlines()[:12]:
        r = json.loads(line)
        reasoning, answer = r["answer"].split("####")
        content = f"<think>\n{reasoning.strip()}\n</think>\n\nThe answer is $\\boxed{{{answer.strip()}}}$."
        lines.append(json.dumps({"messages": [{"role": "user", "content": r["question"]},
                                              {"role": "assistant", "content": content}]}))
    path.write_text("\n".join(lines) + "\n")
    return path


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_two_steps_on_the_mixture_then_the_checkpoint_loads_generates_and_resumes(mixture_dir, tiny_model, tmp_path):
    out = tmp_path / "sft"
    r = curate("train", "sft", "--student", tiny_model, "--data", mixture_dir, "--out", out, "--max-steps", 2,
               "--batch-size", 4, "--save-steps", 2, "--logging-steps", 1, "--lr", "1e-3", "--no-progress")
    assert "lint: ok" in r.stdout and "trained 2 steps" in r.stdout
    m = manifest(out)
    assert m["status"] == "complete" and m["train"]["global_step"] == 2 and (out / "checkpoint-2").is_dir()
    assert m["stage"] == "sft" and m["counts"]["steps"] == 2 and m["counts"]["rows"] == m["data"]["rows"] > 0
    assert m["counts"]["tokens"] > 0 and m["config"]["student"] == str(tiny_model) and "max_steps" not in m["config"]
    assert m["lint"]["end_token"] == "<|im_end|>" and m["data"]["kind"] == "mixture"
    losses = [h["loss"] for h in m["train"]["log_history"] if "loss" in h]
    assert len(losses) == 2 and all(0 < x < 20 for x in losses)

    before = load_file(tiny_model / "model.safetensors")
    after = load_file(out / "model.safetensors")
    assert not torch.equal(before["model.layers.0.mlp.down_proj.weight"], after["model.layers.0.mlp.down_proj.weight"])
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert tok.pad_token == "<|endoftext|>" and model.config.pad_token_id == tok.pad_token_id != tok.eos_token_id
    assert_generates(model, tok)

    r = curate("train", "sft", "--student", tiny_model, "--data", mixture_dir, "--out", out, "--max-steps", 3,
               "--batch-size", 4, "--save-steps", 2, "--lr", "1e-3", "--resume", "--no-progress")
    m = manifest(out)
    assert m["train"]["global_step"] == 3 and m["trl_config"]["resume_from"].endswith("checkpoint-2")
    assert m["status"] == "complete" and m["counts"]["steps"] == 3
    assert (out / "checkpoint-3").is_dir()


def test_tiny_llama_with_lora_from_a_recipe_through_a_real_accelerate_launch(mixture_dir, tiny_llama, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"student: {tiny_llama}\nlora_r: 4\nmax_steps: 1\nbatch_size: 2\nmax_length: 1024\n")
    out = tmp_path / "sft-llama"
    r = curate("train", "sft", "--config", recipe, "--data", mixture_dir, "--out", out, "--num-processes", 1,
               "--no-progress")
    line = next(x for x in r.stdout.splitlines() if " launch " in x)
    argv = shlex.split(line)
    assert argv[0].endswith("accelerate") and argv[1:4] == ["launch", "--num_processes", "1"]
    assert argv[4:6] == ["-m", "curate.train.sft"] and argv[-1] == "--launched"
    assert manifest(out)["train"]["global_step"] == 1
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["base_model_name_or_path"] == str(tiny_llama)
    from peft import AutoPeftModelForCausalLM

    model = AutoPeftModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert_generates(model, tok)


def test_print_launch_gives_the_exact_accelerate_line_and_writes_nothing(mixture_dir, tiny_model, tmp_path):
    out = tmp_path / "never"
    r = run_cli("--student", tiny_model, "--data", mixture_dir, "--out", out, "--accelerate-config", "zero3",
                "--num-processes", 8, "--lr", "1e-5", "--no-gradient-checkpointing", "--print-launch")
    assert r.exit_code == 0, r.output
    argv = shlex.split(r.output.strip().splitlines()[-1])
    assert argv[1:3] == ["launch", "--config_file"] and Path(argv[3]) == sft.ACCELERATE / "zero3.yaml"
    assert argv[4:8] == ["--num_processes", "8", "-m", "curate.train.sft"]
    args = argv[8:]
    assert args[args.index("--student") + 1] == str(tiny_model) and args[args.index("--lr") + 1] == "1e-05"
    assert "--no-gradient-checkpointing" in args and args[-1] == "--launched" and "--print-launch" not in args
    assert not out.exists()


def test_lint_only_prints_the_rendered_row_and_the_verdict(reasoning_jsonl, tiny_model, tmp_path):
    r = run_cli("--student", tiny_model, "--data", reasoning_jsonl, "--out", tmp_path / "o", "--lint-only")
    assert r.exit_code == 0, r.output
    assert "── rendered row" in r.output and "Janet’s ducks" in r.output and "<think>\nJanet sells" in r.output
    assert "── trained tokens (completion loss) ──\n<think>" in r.output
    assert r.output.strip().endswith("lint: ok (12 rows checked)")
    assert not (tmp_path / "o").exists()


def test_a_template_that_strips_reasoning_is_refused_before_training(reasoning_jsonl, tiny_model, tmp_path):
    import trl

    template = Path(trl.__file__).parent / "chat_templates" / "deepseek_r1_distill.jinja"
    r = curate("train", "sft", "--student", tiny_model, "--data", reasoning_jsonl, "--out", tmp_path / "o",
               "--chat-template", template, check=False)
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the chat template drops the <think> block") and "--chat-template" in last
    assert not (tmp_path / "o").exists()


def test_pad_token_equal_to_eos_is_refused_with_the_fix(reasoning_jsonl, tiny_model, tmp_path):
    r = run_cli("--student", tiny_model, "--data", reasoning_jsonl, "--out", tmp_path / "o",
                "--pad-token", "<|im_end|>")
    assert r.exit_code == 2
    assert "error: the pad token is the end-of-turn token '<|im_end|>'" in r.output
    assert "fix: --pad-token '<|endoftext|>'" in r.output and not (tmp_path / "o").exists()


@pytest.mark.parametrize("extra, message", [
    (["--packing"], "attend to each other"),
    (["--max-length", "32"], "rows are longer than --max-length 32"),
    (["--loss", "assistant"], "assistant-only loss mask cannot be built"),
    (["--resume"], "no checkpoint-N folder to resume from"),
    (["--push-to-hub", "me/student"], "--push-to-hub me/student: the Hub is offline"),
    (["--config", "no-such-recipe"], "no such file or built-in recipe (built-in: r1-distill-llama-70b"),
    (["--eos-token", "<|not-a-token|>"], "not in the student's vocabulary"),
])
def test_bad_options_are_one_line_exit_2_and_nothing_written(reasoning_jsonl, tiny_model, tmp_path, extra, message):
    r = run_cli("--student", tiny_model, "--data", reasoning_jsonl, "--out", tmp_path / "o", *extra)
    assert r.exit_code == 2, r.output
    assert message in r.output and r.output.startswith("error: ") and not (tmp_path / "o").exists()


def test_bad_data_and_recipes_name_the_file(tiny_model, tmp_path):
    no_messages = tmp_path / "problems.jsonl"
    no_messages.write_text('{"problem": "1+1?", "answer": "2"}\n')
    r = run_cli("--student", tiny_model, "--data", no_messages, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "no `messages` column (the columns are: problem, answer)" in r.output
    bad_row = tmp_path / "bad.jsonl"
    bad_row.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    r = run_cli("--student", tiny_model, "--data", bad_row, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "row 0: no assistant turn after the prompt" in r.output
    recipe = tmp_path / "r.yaml"
    recipe.write_text("student: x\nlearning_rate: 1e-5\n")
    r = run_cli("--data", bad_row, "--out", tmp_path / "o", "--config", recipe)
    assert r.exit_code == 2 and f"{recipe}: unknown option 'learning_rate'" in r.output
    r = run_cli("--student", tiny_model, "--data", "no-such-org/no-such-dataset", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "no-such-org/no-such-dataset: could not load the Hub dataset" in r.output
    r = run_cli("--student", "no-such-org/no-such-model", "--data", bad_row, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "--student no-such-org/no-such-model: could not load its tokenizer" in r.output
    assert not (tmp_path / "o").exists()


def test_shipped_recipes_and_accelerate_configs_load():
    from accelerate.commands.config.config_args import load_config_from_file

    names = sorted(p.stem for p in sft.RECIPES.glob("*.yaml"))
    assert {"r1-distill-qwen-1.5b", "r1-distill-qwen-7b", "r1-distill-qwen-14b", "r1-distill-qwen-32b",
            "r1-distill-llama-8b", "r1-distill-llama-70b"} <= set(names)
    for name in names:
        cfg = sft.resolve({"config": name, "data": "runs/mix", "lr": 3e-5})
        assert cfg["lr"] == 3e-5 and cfg["student"]  # flags override the recipe
        if name.startswith("r1-"):
            assert cfg["epochs"] == 2 and "[R1]" in sft.recipe_path(name).read_text()
    for name in ("zero3", "fsdp"):
        config = load_config_from_file(str(sft.ACCELERATE / f"{name}.yaml"))
        assert config.distributed_type.value == {"zero3": "DEEPSPEED", "fsdp": "FSDP"}[name]
        assert config.mixed_precision == "bf16"


@pytest.mark.slow
def test_embedded_smollm2_learns_in_a_few_steps(mixture_dir, tmp_path):
    """The real SmolLM2-135M-Instruct, the shipped CPU recipe, the same 4 rows each step:
    the loss falls."""
    out = tmp_path / "smol"
    curate("train", "sft", "--config", "smollm2-135m-cpu", "--data", mixture_dir, "--out", out, "--limit", 4,
           "--max-steps", 4, "--warmup-ratio", 0, "--no-progress", timeout=900)
    m = manifest(out)
    losses = [h["loss"] for h in m["train"]["log_history"] if "loss" in h]
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert_generates(model, tok)


def test_overwrite_replaces_only_sft_runs_and_only_after_the_lint_passes(reasoning_jsonl, tiny_model, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    r = run_cli("--student", tiny_model, "--data", reasoning_jsonl, "--out", other, "--overwrite")
    assert r.exit_code == 2 and "holds no curate run" in r.output and (other / "notes.txt").exists()
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "manifest.json").write_text(json.dumps({"stage": "sft", "config": {}}))
    r = run_cli("--student", tiny_model, "--data", reasoning_jsonl, "--out", earlier, "--overwrite",
                "--pad-token", "<|im_end|>")
    assert r.exit_code == 2 and (earlier / "manifest.json").exists()  # refused by the lint: nothing deleted
    r = run_cli("--student", tiny_model, "--data", reasoning_jsonl, "--out", earlier)
    assert r.exit_code == 2 and "holds a run with a different config (" in r.output
    assert "re-run with --overwrite to replace it" in r.output


def test_interrupted_resumed_then_a_different_config_refused_unless_overwrite(mixture_dir, tiny_model, tmp_path):
    """The run directory's lifecycle: Ctrl-C right after checkpoint-1 leaves an
    `interrupted` run; the same command is refused without --resume and continues with
    it to `complete`; another config into the same --out is one line unless --overwrite."""
    from transformers import TrainerCallback

    class CtrlC(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            raise KeyboardInterrupt

    out = tmp_path / "sft"
    same = ["--student", tiny_model, "--data", mixture_dir, "--out", out, "--batch-size", 4, "--save-steps", 1,
            "--lr", "1e-3", "--no-progress"]
    p = sft.plan({"student": str(tiny_model), "data": str(mixture_dir), "out": str(out), "batch_size": 4,
                  "save_steps": 1, "lr": 1e-3, "max_steps": 3, "progress": False}, echo=lambda *a: None)
    p.callbacks.append(CtrlC())
    with pytest.raises(KeyboardInterrupt):
        sft.train(p)
    m = manifest(out)
    assert m["status"] == "interrupted" and m["counts"]["steps"] == 1 and (out / "checkpoint-1").is_dir()
    assert not (out / "model.safetensors").exists()

    r = run_cli(*same, "--max-steps", 3)
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1
    assert "holds this run (interrupted, checkpoint-1); pass --resume" in r.output
    r = run_cli(*same, "--max-steps", 3, "--resume")
    assert r.exit_code == 0, r.output
    m = manifest(out)
    assert m["status"] == "complete" and m["counts"]["steps"] == 3
    assert m["trl_config"]["resume_from"].endswith("checkpoint-1")
    assert (out / "model.safetensors").is_file()
    with locked(out):  # the session let go of the lock
        pass

    r = run_cli(*same, "--max-steps", 1, "--loss", "all")
    assert r.exit_code == 2 and r.output.count("\n") == 1 and manifest(out)["status"] == "complete"
    assert r.output.startswith(f"error: {out}: holds a run with a different config (loss: \"completion\" → \"all\")")
    r = run_cli(*same, "--max-steps", 1, "--loss", "all", "--overwrite")
    assert r.exit_code == 0, r.output
    m = manifest(out)
    assert m["status"] == "complete" and m["config"]["loss"] == "all" and m["counts"]["steps"] == 1
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]
    assert m["trl_config"]["resume_from"] is None


def test_a_run_killed_after_its_last_checkpoint_resumes_without_training_a_step_more(mixture_dir, tiny_model,
                                                                                     tmp_path):
    """Killed between the last step's checkpoint and the final save: --resume gives the
    checkpoint's weights as the model, at the same step (transformers alone would train one
    step more: it checks for the end only after a step)."""
    import hashlib

    from transformers import TrainerCallback

    class KilledBeforeTheFinalSave(TrainerCallback):
        def on_train_end(self, args, state, control, **kw):  # checkpoint-1 is written; the model is not
            raise KeyboardInterrupt

    out = tmp_path / "sft"
    options = {"student": str(tiny_model), "data": str(mixture_dir), "out": str(out), "batch_size": 2,
               "save_steps": 1, "lr": 1e-3, "max_steps": 1, "logging_steps": 1, "progress": False}
    p = sft.plan(options, echo=lambda *a: None)
    p.callbacks.append(KilledBeforeTheFinalSave())
    with pytest.raises(KeyboardInterrupt):
        sft.train(p)
    assert (out / "checkpoint-1" / "trainer_state.json").is_file() and not (out / "model.safetensors").exists()

    r = run_cli("--student", tiny_model, "--data", mixture_dir, "--out", out, "--batch-size", 2, "--save-steps", 1,
                "--lr", "1e-3", "--max-steps", 1, "--logging-steps", 1, "--no-progress", "--resume")
    assert r.exit_code == 0, r.output
    m = manifest(out)
    assert m["status"] == "complete" and m["counts"]["steps"] == 1 and m["train"]["global_step"] == 1
    assert m["trl_config"]["resume_from"].endswith("checkpoint-1") and 0 < m["train"]["train_loss"] < 20
    digest = [hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest() for d in (out, out / "checkpoint-1")]
    assert digest[0] == digest[1]
    assert sorted(x.name for x in out.glob("checkpoint-*")) == ["checkpoint-1"]


def test_sigterm_is_an_interruption_and_resume_continues_from_the_last_whole_checkpoint(mixture_dir, tiny_model,
                                                                                       tmp_path):
    """`kill` (SIGTERM) of a running `curate train sft`: exit 130, one line on stderr and
    no traceback, the manifest says `interrupted`; --resume continues from the newest
    checkpoint the Trainer finished writing."""
    import signal
    import subprocess
    import time

    from curate.train import last_checkpoint
    from helpers import CURATE, env

    out = tmp_path / "sft"
    args = ["train", "sft", "--student", tiny_model, "--data", mixture_dir, "--out", out, "--batch-size", 4,
            "--save-steps", 1, "--no-progress"]
    with open(tmp_path / "stderr.txt", "wb") as stderr:
        proc = subprocess.Popen([*CURATE, *map(str, args), "--max-steps", "100000"], stdout=subprocess.DEVNULL,
                                stderr=stderr, env=env(), start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (out / "checkpoint-1" / "trainer_state.json").is_file():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "stderr.txt").read_text()[-2000:]
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    err = (tmp_path / "stderr.txt").read_text()
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"interrupted: the checkpoints are in {out}; add --resume")
    m = manifest(out)
    assert m["status"] == "interrupted" and m["counts"]["steps"] >= 1

    last = last_checkpoint(out)
    step = int(Path(last).name.removeprefix("checkpoint-"))
    curate(*args, "--max-steps", step + 1, "--resume")
    m = manifest(out)
    assert m["status"] == "complete" and m["counts"]["steps"] == step + 1 and m["trl_config"]["resume_from"] == last
