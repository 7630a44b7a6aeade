"""`curate train sft`: distil a student on a curate mixture with TRL's SFTTrainer.

TRL does the training. What this module adds, in the order it runs:

1. one config from three layers: our defaults (SFTOptions) < a recipe YAML
   (`--config NAME_OR_PATH`, train/recipes/) < the flags given on the command line;
2. the data: a `curate mix` folder, a datasets folder, Parquet / JSONL with `messages`,
   or a Hub dataset, checked for a `messages` column before any model is loaded;
3. the student's tokenizer with the overrides (`--chat-template`, `--eos-token`,
   `--pad-token`; with pad == EOS and no `--pad-token`, a distinct special token);
4. the lint (train/lint.py) on real rows: a refusal is one line, exit 2, nothing written;
5. with `--num-processes N` or `--accelerate-config`, the exact `accelerate launch` line,
   printed and run (it re-enters here through `python -m curate.train.sft`);
6. TRL's SFTTrainer, a progress bar, checkpoints in OUT/checkpoint-N (`--resume` continues
   from the last), the final model in OUT, OUT/manifest.json, and `--push-to-hub`.

Where our defaults differ from TRL's SFTConfig, and why:

option: TRL's; curate's; why.

- loss: whole sequence for `messages` rows; `completion`: the last assistant turn only;
  a student should not learn to write the prompts, and needs no `{% generation %}` markers
- epochs: 3; 2; DeepSeek-R1's SFT on its 800k samples ran two epochs (arXiv 2501.12948,
  §2.3.3)
- max_length: 1024; 32768; R1 traces run to thousands of tokens, 1024 truncates nearly
  all (open-r1 distils at 32768)
- lr schedule: linear, no warm-up; cosine to 10% + 3% warm-up; open-r1's
  OpenR1-Distill-7B recipe
- bf16: on (on CPU the Trainer then refuses to start); on where the GPU supports it;
  fp32 on CPU
- max_grad_norm: 1.0; 1.0 (recipes: 0.2, open-r1)
- pad token: pad, else EOS; a distinct special token when pad == EOS; see the lint
- packing / padding-free: off; off, refused without a varlen attention kernel; with sdpa,
  packed rows attend to each other (measured)
- batches: random; grouped by length when not packing; reasoning traces vary 10x in
  length, random batches are mostly padding
- gradient checkpointing: on; on with a GPU, off on CPU; on CPU memory is not the limit
  (its speed cost there was inside the noise, BENCHMARKS.md)
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from curate.errors import CurateError, load_yaml
from curate.options import opt

HERE = Path(__file__).resolve().parent
RECIPES = HERE / "recipes"
ACCELERATE = HERE / "accelerate"
FLASH_ATTENTION = ("flash_attention_2", "flash_attention_3", "kernels-community/flash-attn2",
                   "kernels-community/flash-attn3", "kernels-community/vllm-flash-attn3")

@dataclass
class SFTOptions:
    """Every option of `curate train sft`. A run's config is layered: these defaults < a recipe
    (`config`) < the options given (the flags on the command line, the keyword arguments)."""

    student: str | None = opt(None, "Model to train: Hub name, local folder, or `embedded` (SmolLM2-135M-Instruct).")
    data: str | None = opt(None, "A `curate mix` folder, a datasets folder, Parquet/JSONL with `messages`, or a Hub "
                                 "dataset.")
    out: str | None = opt(None, "Output: checkpoints, the final model, manifest.json (required unless --lint-only).",
                          path="dir")
    config: str | None = opt(None, "Recipe: a built-in name (e.g. r1-distill-qwen-1.5b) or a YAML file; options given "
                                   "override it.")
    split: str = opt("train", "Split of a DatasetDict or Hub dataset.")
    limit: int | None = opt(None, "Train on the first N rows only.", min=1)
    epochs: float = opt(2.0, "Epochs (R1's SFT: 2).")
    max_steps: int = opt(-1, "Stop after N optimizer steps (overrides --epochs; -1: none).")
    lr: float = opt(2e-5, "Peak learning rate.")
    batch_size: int = opt(8, "Rows per device per step.", min=1)
    grad_accum: int = opt(1, "Gradient accumulation steps.", min=1)
    max_length: int = opt(32768, "Tokens per row (packed sequence with --packing).", min=1)
    loss: str = opt("completion", "Trained tokens: the last assistant turn (any template) | every assistant turn "
                                  "({% generation %}) | all.", choices=("completion", "assistant", "all"))
    lora_r: int = opt(0, "LoRA rank (peft, all linear layers); 0 = full fine-tune.", min=0)
    lora_alpha: int | None = opt(None, "LoRA alpha (default: 2 × rank).")
    packing: bool = opt(False, "BFD packing, padding-free (needs a flash-attention kernel).", negatable=True)
    padding_free: bool = opt(False, "Padding-free batches (with --packing).", negatable=True)
    gradient_checkpointing: bool | None = opt(None, "Gradient checkpointing (default: on with a GPU, off on CPU).")
    group_by_length: bool | None = opt(None, "Batches of similar length, less padding (default: on without --packing).")
    bf16: bool | None = opt(None, "bfloat16 (default: on where the GPU supports it).")
    liger: bool | None = opt(None, "Liger kernels (default: on where installed, with a GPU).")
    attn_implementation: str | None = opt(None, "e.g. flash_attention_2 (default: transformers' sdpa).")
    chat_template: str | None = opt(None, "A .jinja chat template for the student.", path="file")
    eos_token: str | None = opt(None, "The token the student stops at (e.g. '<|im_end|>' for a base model).")
    pad_token: str | None = opt(None, "Pad token (default: the tokenizer's, or a distinct special token when it is "
                                      "the EOS).")
    warmup_ratio: float = opt(0.03, "Share of the steps that warm the learning rate up.")
    lr_scheduler: str = opt("cosine_with_min_lr", "transformers scheduler name.")
    min_lr_rate: float = opt(0.1, "cosine_with_min_lr: the floor, a share of the peak.", cli=False)
    weight_decay: float = opt(0.0, "Weight decay.")
    max_grad_norm: float = opt(1.0, "Gradient clipping.")
    seed: int = opt(42, "Seed of the data order and the initialisation.")
    save_steps: int = opt(500, "Checkpoint every N steps (and at the end).", min=1)
    save_total_limit: int | None = opt(None, "Keep only the last N checkpoints.", min=1)
    logging_steps: int = opt(10, "Log every N steps.", min=1)
    lint_rows: int = opt(64, "Rows the chat-template lint checks.", min=1)
    lint_only: bool = opt(False, "Print a rendered row, its trained tokens and the lint verdict; train nothing.")
    resume: bool = opt(False, "Continue from the last checkpoint in --out.")
    overwrite: bool = opt(False, "Replace an earlier `curate train sft` run in --out.")
    push_to_hub: str | None = opt(None, "Upload the final model to this Hub repo (token: `hf auth login` / HF_TOKEN).",
                                  metavar="REPO")
    num_processes: int | None = opt(None, "Train on N GPUs through `accelerate launch`.", min=1)
    accelerate_config: str | None = opt(None, "zero3, fsdp (shipped) or an accelerate YAML; implies `accelerate "
                                              "launch`.")
    print_launch: bool = opt(False, "Print the `accelerate launch` line and stop.")
    progress: bool = opt(True, "Show a progress bar (--no-progress: none).", cli="--no-progress")
    launched: bool = opt(False, "Set by `accelerate launch`: this process is one of its ranks.", hidden=True)
    command: list[str] = opt([], "The command line recorded in the manifest.", cli=False)


# Options that only steer this process (never part of a recipe, never passed on by a launch).
RUN_FLAGS = ("out", "config", "resume", "overwrite", "lint_only", "num_processes", "accelerate_config",
             "print_launch", "progress", "launched", "command")
# The defaults a recipe layers over.
SFT_DEFAULTS = {f.name: f.default for f in fields(SFTOptions) if f.name not in RUN_FLAGS}


# --- config ------------------------------------------------------------------------


def resolve(cli_values: dict) -> dict:
    """Defaults < recipe (`config`) < the flags given (not None)."""
    cfg = dict(SFT_DEFAULTS)
    if cli_values.get("config"):
        cfg.update(load_recipe(cli_values["config"]))
    cfg.update({k: v for k, v in cli_values.items() if v is not None and k not in RUN_FLAGS})
    for key in ("student", "data"):
        if not cfg[key]:
            raise CurateError(f"--{key} is required (or set `{key}:` in the recipe)")
    if cfg["loss"] not in ("completion", "assistant", "all"):
        raise CurateError(f"loss: {cfg['loss']!r} is not one of completion, assistant, all")
    if (cfg["packing"] or cfg["padding_free"]) and cfg["attn_implementation"] not in FLASH_ATTENTION:
        raise CurateError(
            f"--packing / --padding-free put several rows in one sequence; with attention "
            f"{cfg['attn_implementation'] or 'sdpa'!r} they attend to each other (measured: wrong logits for every row "
            "after the first); fix: --attn-implementation flash_attention_2 (GPU), or drop --packing / --padding-free")
    if cfg["padding_free"] and not cfg["packing"]:
        raise CurateError("--padding-free without --packing cannot enforce --max-length (TRL); add --packing")
    for key in ("epochs", "lr", "batch_size", "grad_accum", "max_length", "lint_rows"):
        if not isinstance(cfg[key], (int, float)) or cfg[key] <= 0:
            raise CurateError(f"{key}: must be a positive number, got {cfg[key]!r}")
    return cfg


def recipe_path(name: str) -> Path:
    p = Path(name)
    if p.is_file():
        return p
    builtin = RECIPES / f"{name.removesuffix('.yaml')}.yaml"
    if builtin.is_file():
        return builtin
    names = ", ".join(sorted(x.stem for x in RECIPES.glob("*.yaml")))
    raise CurateError(f"--config {name}: no such file or built-in recipe (built-in: {names})")


def load_recipe(name: str) -> dict:

    path = recipe_path(name)
    recipe = load_yaml(path.read_text(), str(path), what="malformed YAML") or {}
    if not isinstance(recipe, dict):
        raise CurateError(f"{path}: a recipe is a mapping of option: value")
    recipe = {str(k).replace("-", "_"): v for k, v in recipe.items()}
    unknown = sorted(set(recipe) - set(SFT_DEFAULTS))
    if unknown:
        raise CurateError(f"{path}: unknown option {unknown[0]!r} (options: {', '.join(SFT_DEFAULTS)})")
    return recipe


def accelerate_config_path(name: str) -> Path:
    p = Path(name)
    if p.is_file():
        return p.resolve()
    builtin = ACCELERATE / f"{name.removesuffix('.yaml')}.yaml"
    if builtin.is_file():
        return builtin
    raise CurateError(f"--accelerate-config {name}: no such file (built-in: zero3, fsdp)")


# --- data --------------------------------------------------------------------------


def load_data(path: str, split: str, limit: int | None):
    """A `messages` dataset from any table curate reads (store.open_table): a `curate mix`
    folder (its datasets copy, memory-mapped), a datasets folder, Parquet/JSONL or the Hub."""
    import datasets

    from curate.store import open_table

    table = open_table(path, split=split)
    kind = "mixture" if table.kind == "mix" else table.kind
    if table.kind == "mix" and (Path(path) / "dataset").is_dir():  # the same rows, memory-mapped
        table = open_table(Path(path) / "dataset", split=split)
    columns = table.columns()
    if "messages" in columns:
        ds = datasets.Dataset(table.arrow())
    else:  # traces in another layout (flat, ShareGPT, any reasoning spelling): as `curate mix` writes them
        from curate.mix import SourceSpec, to_messages

        try:
            rows, _, _ = to_messages(table.read(), SourceSpec("data", str(path)), False, "empty")
        except CurateError:
            raise CurateError(f"{path}: no `messages` column (the columns are: {', '.join(columns)}); give a "
                              "`curate mix` output, rows with a list of {role, content} messages, or traces "
                              "(problem + completion, ShareGPT conversations)") from None
        ds = datasets.Dataset(rows.select("messages").to_arrow())
    if len(ds) == 0:
        raise CurateError(f"{path}: no rows")
    if limit:
        ds = ds.select(range(min(limit, len(ds))))
    info = {"path": str(path), "kind": kind, "split": split, "rows": len(ds), "fingerprint": table.fingerprint()}
    return ds, info


def check_row(messages, where: str) -> None:
    if not isinstance(messages, list) or not messages:
        raise CurateError(f"{where}: `messages` must be a non-empty list of {{role, content}}")
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise CurateError(f"{where}: every message needs a string role and content, got {str(m)[:80]}")
    roles = [m["role"] for m in messages]
    if "assistant" not in roles[1:]:
        raise CurateError(f"{where}: no assistant turn after the prompt (roles: {', '.join(roles)})")


def to_training_rows(ds, loss: str, path: str):
    """The shape TRL trains on: prompt/completion for `completion` loss, else messages."""
    from curate.train.lint import to_prompt_completion

    def convert(row, i):
        check_row(row["messages"], f"{path}: row {i}")
        messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
        return to_prompt_completion(messages) if loss == "completion" else {"messages": messages}

    return ds.map(convert, with_indices=True, remove_columns=ds.column_names, desc="Checking rows")


# --- student -----------------------------------------------------------------------


def student_path(name: str) -> str:
    if name == "embedded":
        from curate.embedded import embedded_model_dir

        return str(embedded_model_dir())
    return name


def load_tokenizer(cfg: dict):
    from transformers import AutoTokenizer

    student = student_path(cfg["student"])
    try:
        tok = AutoTokenizer.from_pretrained(student)
    except Exception as e:  # noqa: BLE001 - offline, unknown name, no tokenizer files
        raise CurateError(f"--student {cfg['student']}: could not load its tokenizer ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:160]})") from None
    if cfg["chat_template"]:
        p = Path(cfg["chat_template"])
        if not p.is_file():
            raise CurateError(f"--chat-template {p}: no such file")
        tok.chat_template = p.read_text()
    for key in ("eos_token", "pad_token"):
        token = cfg[key]
        if token and token not in tok.get_vocab():
            raise CurateError(f"--{key.replace('_', '-')} {token!r}: not in the student's vocabulary")
    if cfg["eos_token"]:
        tok.eos_token = cfg["eos_token"]
    return tok


def student_eos_ids(student: str, tok) -> list[int]:
    """The token ids the student stops at: its generation config's EOS, else its config's."""
    from transformers import AutoConfig, GenerationConfig

    try:
        eos = GenerationConfig.from_pretrained(student).eos_token_id
    except Exception:  # noqa: BLE001 - no generation_config.json
        try:
            eos = AutoConfig.from_pretrained(student).eos_token_id
        except Exception:  # noqa: BLE001
            eos = None
    ids = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    return ids + [tok.eos_token_id]


def lint_rows(ds, n: int, path: str) -> list[dict]:
    """Up to `n` rows spread evenly over the data (deterministic)."""
    step = max(1, len(ds) // n)
    idx = list(range(0, len(ds), step))[:n]
    rows = []
    for i in idx:
        messages = ds[i]["messages"]
        check_row(messages, f"{path}: row {i}")
        rows.append({"messages": [{"role": m["role"], "content": m["content"]} for m in messages]})
    return rows


def run_lint(cfg: dict, tok, ds):
    from curate.train.lint import choose_pad_token, lint

    rows = lint_rows(ds, cfg["lint_rows"], cfg["data"])
    notes = []
    if not cfg["pad_token"] and (tok.pad_token is None or tok.pad_token == tok.eos_token):
        rendered = ([tok.apply_chat_template(r["messages"], tokenize=False) for r in rows[:8]]
                    if tok.chat_template else [])
        pad = choose_pad_token(tok, tok.eos_token, rendered)
        if pad:
            notes.append(f"pad token {tok.pad_token!r} is the EOS token; padding with {pad!r} instead")
            tok.pad_token = pad
    elif cfg["pad_token"]:
        tok.pad_token = cfg["pad_token"]
    report = lint(tok, rows, loss=cfg["loss"], max_length=cfg["max_length"],
                  eos_token_ids=student_eos_ids(student_path(cfg["student"]), tok),
                  padding_free=cfg["packing"] or cfg["padding_free"])
    report.notes[:0] = notes
    return report


# --- multi-GPU -----------------------------------------------------------------------


def launch_command(cli_values: dict) -> list[str]:
    """`accelerate launch [--config_file F] [--num_processes N] -m curate.train.sft ARGS --launched`."""
    exe = Path(sys.executable).parent / "accelerate"
    cmd = [str(exe) if exe.exists() else "accelerate", "launch"]
    if cli_values.get("accelerate_config"):
        cmd += ["--config_file", str(accelerate_config_path(cli_values["accelerate_config"]))]
    if cli_values.get("num_processes"):
        cmd += ["--num_processes", str(cli_values["num_processes"])]
    cmd += ["-m", "curate.train.sft"]
    for key, value in cli_values.items():
        if value is None or key in ("num_processes", "accelerate_config", "print_launch", "launched"):
            continue
        flag = "--" + key.replace("_", "-")
        if key == "progress":
            cmd += [] if value else ["--no-progress"]
        elif isinstance(value, bool):
            cmd += [flag] if value else [f"--no-{key.replace('_', '-')}"] if key in SFT_DEFAULTS else []
        else:
            cmd += [flag, str(value)]
    return cmd + ["--launched"]


# --- the run -------------------------------------------------------------------------


@dataclass
class SFTPlan:
    """One `curate train sft` as its steps hand it on: the resolved config, the run flags,
    and what the checks loaded (data, tokenizer, lint report, the checkpoint to resume from)."""

    cfg: dict
    flags: dict  # the run flags as given (RUN_FLAGS: out, resume, overwrite, lint_only, launch, ...)
    out: Path
    say: Callable = print  # prints on the main process only
    main: bool = True  # rank 0: the process that writes the run directory
    command: list | None = None
    run: Any = None  # the run directory (store.open_run); None with --lint-only
    data: Any = None  # a datasets.Dataset with a `messages` column
    data_info: dict = field(default_factory=dict)
    tok: Any = None
    report: Any = None  # the lint's LintReport
    checkpoint: str | None = None  # the checkpoint-N folder training resumes from
    callbacks: list = field(default_factory=list)  # more TrainerCallbacks for the trainer

    def flag(self, name: str) -> bool:
        return bool(self.flags.get(name))

    @property
    def launched(self) -> bool:
        """This process was started by `accelerate launch` (one of its ranks)."""
        return self.flag("launched")

    @property
    def launch(self) -> bool:
        """This process starts `accelerate launch` instead of training itself."""
        return not self.launched and bool(self.flags.get("num_processes") or self.flags.get("accelerate_config"))

    @property
    def progress(self) -> bool:
        return self.flags.get("progress") is not False and self.main


def run(cli_values: dict, echo=print, command: list | None = None) -> int:
    """The whole command: plan it (nothing written), then print the lint, launch, or train.
    Returns the exit code of the (launched) training."""
    p = plan(cli_values, echo, command)
    if p.flag("lint_only"):
        return 0
    if not p.launched:
        p.say("\n".join([f"note: {n}" for n in p.report.notes] + [p.report.verdict()]))
    try:
        return launch(p) if p.launch else train(p)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the manifest says `interrupted`
        if p.main:
            print(f"interrupted: the checkpoints are in {p.out}; add --resume to the same command to continue",
                  file=sys.stderr)
        return 130


def plan(cli_values: dict, echo=print, command: list | None = None) -> SFTPlan:
    """Every check before anything is written: the config, the flags, the Hub, the run
    directory, the data, the tokenizer and the lint (a refusal is one line)."""
    main = int(os.environ.get("RANK", "0")) == 0
    p = SFTPlan(cfg=resolve(cli_values), flags=cli_values, out=Path(cli_values.get("out") or "."),
                say=echo if main else (lambda *a, **k: None), main=main, command=command)
    check_flags(p)
    if cli_values.get("progress") is False:
        import datasets

        datasets.disable_progress_bars()
    if p.cfg["push_to_hub"] and not p.flag("lint_only"):
        check_hub(p.cfg["push_to_hub"])
    p.data, p.data_info = load_data(p.cfg["data"], p.cfg["split"], p.cfg["limit"])
    check_out(p)
    p.tok = load_tokenizer(p.cfg)
    p.report = run_lint(p.cfg, p.tok, p.data)
    if p.flag("lint_only"):
        p.say(p.report.render())
    if not p.report.ok:
        raise CurateError(p.report.problems[0])
    return p


def check_flags(p: SFTPlan) -> None:
    if not p.flags.get("out") and not p.flag("lint_only"):
        raise CurateError("--out is required (the folder for checkpoints, the model and manifest.json)")
    if p.flag("print_launch") and not p.launch:
        raise CurateError("--print-launch needs --num-processes or --accelerate-config")
    if p.flag("resume") and p.flag("overwrite"):
        raise CurateError("--resume continues the run in --out and --overwrite replaces it; give one of them")


def check_out(p: SFTPlan) -> None:
    """The run directory, checked (nothing is written yet): empty, or an sft run with the
    same config and data (store.open_run refuses others unless --overwrite), and the
    checkpoint to resume from with --resume."""
    from curate.store import open_run
    from curate.train import last_checkpoint

    if p.flag("lint_only"):
        return
    config = {**run_config(p.cfg), "data_fingerprint": p.data_info["fingerprint"]}
    p.run = open_run(p.out, "sft", config, overwrite=p.flag("overwrite"), command=p.command or ())
    last = last_checkpoint(p.out) if p.run.resuming else None
    if p.flag("resume"):
        if last is None:
            raise CurateError(f"{p.out}: no checkpoint-N folder to resume from; drop --resume to start a new run")
        p.checkpoint = last
    elif last is not None:
        raise CurateError(f"{p.out}: holds this run ({p.run.read_manifest().get('status')}, {Path(last).name}); "
                          "pass --resume to continue from its last checkpoint, --overwrite to replace it, "
                          "or choose another --out")


# Options a run can be resumed with changed: how long it trains, how it checkpoints and logs.
RESUMABLE = ("epochs", "max_steps", "save_steps", "save_total_limit", "logging_steps", "lint_rows", "push_to_hub")


def run_config(cfg: dict) -> dict:
    """The config that makes a run what it is: a run resumed with other RESUMABLE
    options (more steps, other checkpointing or logging) is the same run."""
    return {k: v for k, v in cfg.items() if k not in RESUMABLE}


def check_hub(repo: str) -> None:
    """Before any training: the Hub is reachable and a token is set (never printed)."""
    from huggingface_hub import HfApi, constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise CurateError(f"--push-to-hub {repo}: the Hub is offline (HF_HUB_OFFLINE=1); "
                          "unset it or drop --push-to-hub")
    if not get_token():
        raise CurateError(f"--push-to-hub {repo}: no Hugging Face token; run `hf auth login` or set HF_TOKEN")
    try:
        HfApi().whoami()
    except Exception as e:  # noqa: BLE001
        raise CurateError(f"--push-to-hub {repo}: the Hub did not accept the token ({type(e).__name__})") from None


def launch(p: SFTPlan) -> int:
    """Print the `accelerate launch` line and (unless --print-launch) run it."""
    cmd = launch_command(p.flags)
    p.say(shlex.join(cmd))
    if p.flag("print_launch"):
        return 0
    return subprocess.call(cmd)  # its main process holds the run directory


def sft_config(cfg: dict, out: Path):
    """TRL's SFTConfig for a resolved config, with the automatic choices made
    (bf16, Liger, gradient checkpointing, length-grouped batches). The benchmark uses it too."""
    import torch
    from trl import SFTConfig

    cuda = torch.cuda.is_available()
    auto = {
        "bf16": bool(cuda and torch.cuda.is_bf16_supported()),
        "liger": bool(cuda and _installed("liger_kernel")),
        "gradient_checkpointing": cuda,  # on CPU memory is not the limit
        "group_by_length": not cfg["packing"],  # batches of similar length: far less padding
    }
    chosen = {k: auto[k] if cfg.get(k) is None else cfg[k] for k in auto}
    if chosen["liger"] and not _installed("liger_kernel"):
        raise CurateError("--liger: liger-kernel is not installed; `pip install liger-kernel` or pass --no-liger")
    args = SFTConfig(
        output_dir=str(out),
        num_train_epochs=cfg["epochs"],
        max_steps=cfg["max_steps"],
        learning_rate=cfg["lr"],
        per_device_train_batch_size=cfg["batch_size"],
        gradient_accumulation_steps=cfg["grad_accum"],
        max_length=cfg["max_length"],
        packing=cfg["packing"],
        padding_free=cfg["padding_free"],
        completion_only_loss=cfg["loss"] == "completion",
        assistant_only_loss=cfg["loss"] == "assistant",
        gradient_checkpointing=chosen["gradient_checkpointing"],
        bf16=chosen["bf16"],
        use_liger_kernel=chosen["liger"],
        train_sampling_strategy="group_by_length" if chosen["group_by_length"] else "random",
        eos_token=cfg["eos_token"],
        warmup_steps=cfg["warmup_ratio"],
        lr_scheduler_type=cfg["lr_scheduler"],
        lr_scheduler_kwargs=(
            {"min_lr_rate": cfg["min_lr_rate"]} if cfg["lr_scheduler"] == "cosine_with_min_lr" else None
        ),
        weight_decay=cfg["weight_decay"],
        max_grad_norm=cfg["max_grad_norm"],
        seed=cfg["seed"],
        save_strategy="steps",
        save_steps=cfg["save_steps"],
        save_total_limit=cfg["save_total_limit"],
        logging_steps=cfg["logging_steps"],
        report_to=[],
        disable_tqdm=True,
        dataloader_pin_memory=cuda,
    )
    return args, chosen


def load_student(cfg: dict, bf16: bool):
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": torch.bfloat16 if bf16 else torch.float32}
    if cfg["attn_implementation"]:
        kwargs["attn_implementation"] = cfg["attn_implementation"]
    try:
        return AutoModelForCausalLM.from_pretrained(student_path(cfg["student"]), **kwargs)
    except Exception as e:  # noqa: BLE001
        raise CurateError(f"--student {cfg['student']}: could not load the model ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:160]})") from None


def lora_config(cfg: dict):
    if not cfg["lora_r"]:
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg["lora_r"], lora_alpha=cfg["lora_alpha"] or 2 * cfg["lora_r"], lora_dropout=0.05,
                      target_modules="all-linear", task_type="CAUSAL_LM")


def train(p: SFTPlan) -> int:
    """Build the trainer (its prepared rows checked), then in a session of the run
    directory (the lock; running -> complete | interrupted | failed): train from the
    checkpoint or from scratch, save the model, record the counts; then push."""
    from curate.train import train_from

    trainer, chosen = build_trainer(p)
    with session(p) as manifest:
        manifest.update(options=p.cfg, data=p.data_info, student=student_path(p.cfg["student"]),
                        lint=p.report.to_dict(), trl_config={**chosen, "resume_from": p.checkpoint})
        t0 = time.time()
        try:
            result = train_from(trainer, p.checkpoint)
        finally:  # also when interrupted: how far it got
            manifest["counts"] = {"rows": len(p.data), "steps": trainer.state.global_step,
                                  "tokens": trainer._total_train_tokens}
        manifest["train"] = train_stats(trainer, result, time.time() - t0)
        save_final_model(p, trainer)
    stats = manifest["train"]
    p.say(f"trained {stats['global_step']} steps in {stats['seconds']:.1f} s ({stats['tokens']:,} tokens, "
          f"{stats['tokens_per_s']:,.0f} tok/s, loss {stats['train_loss']:.4f}); model in {p.out}")
    if p.main and p.cfg["push_to_hub"]:
        push(p.out, p.cfg["push_to_hub"], p.say)
    return 0


@contextlib.contextmanager
def session(p: SFTPlan):
    """The main process's session of the run directory (store.RunStore.session), which
    starts from an empty folder unless it resumes a checkpoint; other ranks get a dict."""
    if not p.main:
        yield {}
        return
    with p.run.session() as manifest:
        if p.checkpoint is None:  # a new run, --overwrite, or one stopped before its first checkpoint
            for f in p.out.iterdir():
                if f.name not in (".lock", "manifest.json"):
                    shutil.rmtree(f) if f.is_dir() else f.unlink()
        yield manifest


def build_trainer(p: SFTPlan):
    """TRL's SFTTrainer for the plan, its prepared rows checked against the lint; returns
    it and the automatic choices made (bf16, Liger, ...)."""
    from trl import SFTTrainer

    args, chosen = sft_config(p.cfg, p.out)
    rows = to_training_rows(p.data, p.cfg["loss"], p.cfg["data"])
    model = load_student(p.cfg, chosen["bf16"])
    bar = progress_callback(p.progress)
    trainer = SFTTrainer(model=model, args=args, train_dataset=rows, processing_class=p.tok,
                         peft_config=lora_config(p.cfg), callbacks=[bar, *p.callbacks])
    bar.trainer = trainer
    _check_trainer_labels(trainer, p.tok, p.report)
    return trainer, chosen


def train_stats(trainer, result, seconds: float) -> dict:
    """What the manifest records of a training session."""
    tokens = trainer._total_train_tokens
    return {"global_step": trainer.state.global_step, "train_loss": result.training_loss,
            "seconds": round(seconds, 2), "tokens": tokens, "tokens_per_s": round(tokens / max(seconds, 1e-9), 1),
            "log_history": trainer.state.log_history[-20:]}


def save_final_model(p: SFTPlan, trainer) -> None:
    """The final model into OUT, whole or not at all: every rank takes part in saving
    (ZeRO-3 / FSDP gather the shards) into OUT/.tmp-final; the main one moves the files in."""
    tmp = p.out / ".tmp-final"
    trainer.save_model(str(tmp))
    trainer.accelerator.wait_for_everyone()
    if p.main:
        for f in tmp.iterdir():
            os.replace(f, p.out / f.name)
        tmp.rmdir()


def push(out: Path, repo: str, say) -> None:
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo, exist_ok=True)
        api.upload_folder(folder_path=str(out), repo_id=repo, ignore_patterns=["checkpoint-*", ".tmp-*", ".lock"])
    except Exception as e:  # noqa: BLE001
        raise CurateError(f"--push-to-hub {repo}: upload failed ({type(e).__name__}: {str(e).splitlines()[0][:160]}); "
                          f"the model is saved in {out}") from None
    say(f"pushed {out} to https://huggingface.co/{repo}")


def _check_trainer_labels(trainer, tok, report) -> None:
    """TRL's prepared training rows must agree with the lint: the end-of-turn token is trained."""
    end = tok.convert_tokens_to_ids(report.end_token)
    first = trainer.train_dataset[0]
    if end not in [t for t, label in zip(first["input_ids"], first["labels"]) if label != -100]:
        raise CurateError(f"TRL's prepared first row does not train the end-of-turn token {report.end_token!r} "
                          "(truncated by --max-length?); fix: raise --max-length")


def progress_callback(enabled: bool):
    """A TrainerCallback that drives curate's progress bar (steps, and tokens/s from TRL's count)."""
    from transformers import TrainerCallback

    from curate.progress import Progress

    class ProgressCallback(TrainerCallback):
        trainer = None

        def on_train_begin(self, args, state, control, **kw):
            self.bar = Progress("sft", state.max_steps, "steps", state.global_step, enabled, tokens=True).__enter__()
            self.tokens = 0

        def on_step_end(self, args, state, control, **kw):
            total = self.trainer._total_train_tokens if self.trainer else 0
            self.bar.advance(1, tokens=total - self.tokens)
            self.tokens = total

        def on_train_end(self, args, state, control, **kw):
            self.bar.__exit__(None, None, None)

    return ProgressCallback()


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def main() -> None:
    """`python -m curate.train.sft ARGS` is `curate train sft ARGS` (the target of `accelerate launch`)."""
    from curate.cli import cli

    cli(["train", "sft", *sys.argv[1:]], prog_name="curate")


if __name__ == "__main__":
    main()
