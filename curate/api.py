"""The Python API: one function per stage, the ones the command line calls.

Each takes its options dataclass or the same options as keyword arguments (the names of
the dataclass fields; see `help(curate.<function>)`), runs the stage and returns a
`Result`: the path it wrote, its manifest and counts. Bad input raises CurateError
(the command line prints it as one line and exits 2). Each function imports its stage
when called, so `import curate` stays light."""

from __future__ import annotations

import inspect
import json
import os
import sys
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

from curate.errors import CurateError
from curate.options import build, describe

# function -> (module, options dataclass)
OPTIONS = {
    "generate": ("curate.generate", "GenerateOptions"),
    "filter": ("curate.chain", "FilterOptions"),
    "select": ("curate.select", "SelectOptions"),
    "mix": ("curate.mix", "MixOptions"),
    "card": ("curate.card", "CardOptions"),
    "publish": ("curate.publish", "PublishOptions"),
    "report": ("curate.report", "ReportOptions"),
    "audit": ("curate.audit", "AuditOptions"),
    "train_sft": ("curate.train.sft", "SFTOptions"),
    "train_grpo": ("curate.train.grpo", "GRPOOptions"),
    "evaluate": ("curate.train.eval", "EvalOptions"),
    "run_recipe": ("curate.recipe", "RunOptions"),
}


def options_class(function: str):
    """The options dataclass of an API function (imports its stage)."""
    module, name = OPTIONS[function]
    return getattr(import_module(module), name)


@dataclass
class Result:
    """What a stage made: `out` (its folder, or the file it wrote), its `manifest`, and,
    for a dry run, the `plan` of what would run."""

    out: Path | None
    manifest: dict
    plan: object = None

    @property
    def stage(self) -> str | None:
        return self.manifest.get("stage")

    @property
    def status(self) -> str | None:
        return self.manifest.get("status")

    @property
    def counts(self) -> dict:
        return self.manifest.get("counts") or {}


def _manifest(folder) -> dict:
    path = Path(folder) / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _check_openai(opts) -> None:
    if opts.backend == "openai" and not (opts.engine.base_url or os.environ.get("OPENAI_BASE_URL")):
        raise CurateError("--base-url is required with --backend openai (or set OPENAI_BASE_URL)")


def generate(options=None, /, *, on_plan=None, **kwargs) -> Result:
    """Batch-generate NUM_SAMPLES completions per problem into a resumable run directory.

    Returns the run (manifest counts: samples_done of samples_expected, tokens, shards); a
    dry run (`dry_run=True`) writes nothing and returns the plan. `on_plan(plan)`, if
    given, is called once the run is planned, before the engine loads."""
    gen = import_module("curate.generate")
    opts = build(gen.GenerateOptions, options, **kwargs)
    _check_openai(opts)
    plan = gen.plan(opts)
    if opts.dry_run:
        return Result(Path(opts.out), {}, plan)
    if on_plan is not None:
        on_plan(plan)
    gen.run(plan, progress=opts.progress)
    return Result(Path(opts.out), _manifest(opts.out))


def filter(options=None, /, **kwargs) -> Result:  # noqa: A001 (the stage's name)
    """Run the filter chain; every dropped row is kept in rejected/ with its reason.

    Returns the run; its manifest holds the funnel (rows in, dropped and kept per filter)."""
    chain = import_module("curate.chain")
    opts = build(chain.FilterOptions, options, **kwargs)
    return Result(Path(opts.out), chain.run(chain.plan(opts)))


def select(options=None, /, **kwargs) -> Result:
    """Rejection sampling: pick samples per problem from a filter run; pass rates per problem."""
    stage = import_module("curate.select")
    opts = build(stage.SelectOptions, options, **kwargs)
    return Result(Path(opts.out), stage.run(opts))


def mix(options=None, /, **kwargs) -> Result:
    """Mix sources into a DatasetDict with exact counts, Hub Parquet shards and a dataset card."""
    stage = import_module("curate.mix")
    opts = build(stage.MixOptions, options, **kwargs)
    return Result(Path(opts.out), stage.run(opts))


def card(options=None, /, **kwargs) -> Result:
    """(Re)write the dataset card README.md and plots/ of a mix folder, and check it offline.

    Returns the card's path and the mix's manifest."""
    stage = import_module("curate.card")
    opts = build(stage.CardOptions, options, **kwargs)
    path = stage.write_card(opts.mix_dir, license=opts.license, pretty_name=opts.pretty_name,
                            language=list(opts.language) if opts.language else None)
    return Result(path, _manifest(opts.mix_dir))


def publish(options=None, /, **kwargs) -> Result:
    """Upload a `curate mix` output (shards, card, plots, manifest) to the Hub in one commit.

    The token comes from HF_TOKEN or `hf auth login`; it is never printed or written.

    Returns the folder and the publish record (repo, revision, commit, files); a dry run
    uploads nothing and returns the plan."""
    stage = import_module("curate.publish")
    opts = build(stage.PublishOptions, options, **kwargs)
    p = stage.plan(opts.directory, opts.repo, opts.revision, opts.private)
    if opts.dry_run:
        return Result(Path(opts.directory), {}, p)
    record = stage.push(p, stage.get_token(), log=lambda line: print(line, file=sys.stderr))
    return Result(Path(opts.directory), record)


def report(options=None, /, **kwargs) -> Result:
    """One self-contained HTML page: funnel, lengths, pass rates, languages, kept vs rejected traces.

    Returns the page's path and the manifest of the run it shows."""
    stage = import_module("curate.report")
    opts = build(stage.ReportOptions, options, **kwargs)
    path = stage.write_report(opts.run_dir, opts.out, samples=opts.samples, language_sample=opts.language_sample,
                              seed=opts.seed, progress=opts.progress)
    return Result(path, _manifest(opts.run_dir))


def audit(options=None, /, **kwargs) -> Result:
    """Where the rule verifier and the LLM judge disagree, by cause, with the rules' error rates.

    Returns the page's path and the audit (manifest: counts, rates with 95% intervals,
    disagreements with examples), also written as audit.json beside the page."""
    stage = import_module("curate.audit")
    opts = build(stage.AuditOptions, options, **kwargs)
    path, result = stage.run(opts)
    return Result(path, result)


def train_sft(options=None, /, **kwargs) -> Result:
    """Distil a student on curate data with TRL's SFTTrainer, after linting its chat template.

    The config is layered: the defaults < the recipe named by --config < the options given.

    From Python, the options given are the keyword arguments or, of an SFTOptions object,
    the fields that differ from their defaults. Returns the run (None as `out` with
    lint_only and no out)."""
    sft = import_module("curate.train.sft")
    opts = build(sft.SFTOptions, options, **kwargs)
    if options is None:
        given = dict(kwargs)
    else:
        defaults = sft.SFTOptions()
        given = {k: v for k, v in vars(opts).items() if v != getattr(defaults, k)}
    given.pop("command", None)
    code = sft.run(given, command=opts.command)
    if code and code != 130:  # 130: interrupted (Ctrl-C, SIGTERM); the manifest says so
        error = CurateError(f"the launched training exited with code {code}")
        error.exit_code = code
        raise error
    return Result(Path(opts.out) if opts.out else None, _manifest(opts.out) if opts.out else {})


def train_grpo(options=None, /, **kwargs) -> Result:
    """R1-Zero / R1 reasoning RL: TRL's GRPOTrainer with R1's rule rewards and settings."""
    grpo = import_module("curate.train.grpo")
    opts = build(grpo.GRPOOptions, options, **kwargs)
    return Result(Path(opts.out), grpo.run(opts))


def evaluate(options=None, /, **kwargs) -> Result:
    """k samples per problem, scored with the filters' verifiers: pass@1 (mean over k) ± s.e., maj@k.

    Returns the output folder and its manifest (`results`: per benchmark)."""
    ev = import_module("curate.train.eval")
    opts = build(ev.EvalOptions, options, **kwargs)
    _check_openai(opts)
    return Result(Path(opts.out), ev.run(opts))


def run_recipe(options=None, /, *, echo=print, **kwargs) -> Result:
    """Run a recipe: its stages in dependency order, each in OUT/NAME; re-running resumes.

    Complete stages whose fingerprint matches are skipped, an interrupted one resumes, a
    changed one and everything after it re-run; at the end, the report across stages.

    Returns OUT and OUT/recipe.json (stage statuses, fingerprints, the resolved vars); a
    dry run (`dry_run=True`) writes nothing and returns the plan. `echo` prints progress."""
    recipe = import_module("curate.recipe")
    opts = build(recipe.RunOptions, options, **kwargs)
    p = recipe.plan(opts.recipe, opts.out, sets=opts.sets, smoke=opts.smoke)
    if opts.dry_run:
        return Result(Path(opts.out), recipe.read_state(p.out), p)
    return Result(Path(opts.out), recipe.run(p, progress=opts.progress, echo=echo))


# The command line's help for each: the docstring without its paragraphs for Python callers.
SUMMARIES = {name: "\n\n".join(p for p in inspect.cleandoc(globals()[name].__doc__).split("\n\n")
                                if not p.startswith(("Returns", "From Python"))) for name in OPTIONS}


def documented(name: str):
    """The API function `name`, its docstring completed with its options (once)."""
    fn = globals()[name]
    if not getattr(fn, "_documented", False):
        arguments = describe(options_class(name))
        fn.__doc__ = f"{inspect.cleandoc(fn.__doc__)}\n\n{arguments}\n\nReturns a curate.api.Result.\n"
        fn._documented = True
    return fn
