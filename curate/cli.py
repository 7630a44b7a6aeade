"""The `curate` command line. Each stage command is built from its options dataclass
(curate.options) and calls the stage's Python function (curate.api), then prints a
summary. Options load when their command is used, so `curate --help` starts in a fraction
of a second (no torch, vLLM, polars or datasets)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import fields
from pathlib import Path

import click

from curate import __version__, api
from curate.errors import CurateError, one_line
from curate.options import pairs


class Group(click.Group):
    """Every CurateError becomes one line on stderr and exit code 2; any other error (a
    bug) one line naming the stage and the log file that holds its traceback, exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CurateError as e:
            click.echo(f"error: {one_line(e)}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the stage's manifest says `interrupted`
            click.echo("interrupted: what is finished is saved; re-run the same command to resume", err=True)
            ctx.exit(130)
        except ModuleNotFoundError as e:  # curate.filters from a checkout that is not installed
            if (e.name or "").startswith("curate."):
                click.echo(f"error: {e}", err=True)
                ctx.exit(2)
            self._internal_error(ctx, e)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except Exception as e:  # noqa: BLE001 - a bug: one line on the terminal, the traceback in a log
            self._internal_error(ctx, e)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """As click's, but a usage error (an unknown option, a value of the wrong type) is
        one line too: `error: ...` naming the option, then where help is, exit code 2."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NO_ARGS_IS_HELP as e:  # `curate`, `curate train`: the help, as click shows it
            e.show()
            sys.exit(e.exit_code)
        except click.UsageError as e:
            where = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
            click.echo(f"error: {one_line(e.format_message())}{where}", err=True)
            sys.exit(2)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    @staticmethod
    def _internal_error(ctx, error: Exception) -> None:
        stage = ctx.meta.get(STAGE_KEY) or {"name": ctx.invoked_subcommand or "curate", "out": None}
        log = write_crash_log(stage["name"], stage["out"])
        click.echo(f"internal error in `curate {stage['name']}`: {type(error).__name__}: "
                   f"{str(error).splitlines()[0][:200] if str(error) else ''} (the traceback is in {log}); "
                   "please report it", err=True)
        ctx.exit(1)


NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2
STAGE_KEY = "curate.stage"  # ctx.meta: the running command's name and --out, for the crash log


def write_crash_log(name: str, out: str | None) -> Path:
    """Append the current exception's traceback to the stage's own log in its --out folder
    when that folder exists, else to ~/.cache/curate/logs/<timestamp>-<command>.log."""
    import time
    import traceback

    from curate.store import load_manifest

    text = f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} curate {' '.join(sys.argv[1:])}\n{traceback.format_exc()}"
    if out and Path(out).is_dir():
        try:
            stage = (load_manifest(out) or {}).get("stage")
        except Exception:  # noqa: BLE001 - an unreadable manifest may be the very failure
            stage = None
        path = Path(out) / f"{stage or name.split()[-1]}.log"
    else:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        path = cache / "curate" / "logs" / f"{time.strftime('%Y%m%d-%H%M%S')}-{name.replace(' ', '-')}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(text)
    except OSError:  # nowhere to write: the traceback goes to the terminal after all
        click.echo(text, err=True)
    return path


class StageCommand(click.Command):
    """A command whose options are the fields of a stage's options dataclass, read when
    the command is used; its callback gets the options given on the command line."""

    def __init__(self, name: str, function: str, run, params=(), **kwargs):
        super().__init__(name, callback=self._invoke, params=list(params),
                         help=api.SUMMARIES[function], **kwargs)
        self.function, self.run, self.loaded = function, run, False
        self.extra = [p.name for p in params]

    def get_params(self, ctx):
        if not self.loaded:
            from curate.options import params

            self.params[:0] = params(api.options_class(self.function))
            self.loaded = True
        return super().get_params(ctx)

    def _invoke(self, **values):
        from curate.options import given

        extra = {name: values.pop(name) for name in self.extra}  # command-line-only options (eval --json)
        ctx = click.get_current_context()
        options = given(ctx, values)
        ctx.meta[STAGE_KEY] = {"name": ctx.command_path.split(" ", 1)[-1], "out": options.get("out")}
        if any(f.name == "command" for f in fields(api.options_class(self.function))):  # recorded in the manifest
            options["command"] = ["curate", *sys.argv[1:]]
        return self.run(options, **extra)


def stage(group: click.Group, name: str, function: str, *extra: click.Parameter, **settings):
    """Register `run(given, **extra)` as the command NAME of the API function FUNCTION."""

    def decorate(run):
        group.add_command(StageCommand(name, function, run, params=extra, **settings))
        return run

    return decorate


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="curate")
def cli():
    """Build DeepSeek-R1-style reasoning data: generate, filter, select, mix, publish, train."""


@stage(cli, "generate", "generate")
def generate(given: dict):
    from curate.backends.base import TransientBackendError
    from curate.store import sigterm_interrupts

    out = given["out"]
    try:
        with sigterm_interrupts():  # from the start: loading the engine is stoppable too
            result = api.generate(**given, on_plan=_announce)
    except KeyboardInterrupt:
        click.echo(f"interrupted: finished samples are saved in {out}; re-run the same command to resume", err=True)
        sys.exit(130)
    except TransientBackendError as e:
        click.echo(f"error: {e}; finished samples are saved in {out}; re-run the same command to retry", err=True)
        sys.exit(1)
    if result.plan is not None:
        _print_plan(result.plan)
        return
    _print_summary(result)
    if result.counts["samples_done"] < result.counts["samples_expected"]:
        sys.exit(1)


def _announce(plan) -> None:
    """The one-line plan printed before the engine loads."""
    o = plan.opts
    click.echo(f"generate: {plan.problems.height} problems × {plan.sampling.n} samples, {plan.model_label} on "
               f"{o.backend} -> {o.out}" + ("" if o.verbose else f" (engine output: {plan.store.log_path})"))


def _print_plan(plan) -> None:
    from rich.console import Console
    from rich.panel import Panel

    from curate.generate import variables

    console = Console()
    done = plan.store.done() if plan.resuming else {}
    n = plan.sampling.n
    total = plan.problems.height * n
    remaining = total - sum(len(v) for v in done.values())
    console.print(f"[bold]plan[/bold] {plan.problems.height} problems × {n} samples = {total} samples "
                  f"({remaining} to generate{', resuming' if plan.resuming else ''})")
    info = plan.input_info
    console.print(f"  input     {info['path']} ({info['kind']}, sha256 {str(info['sha256'])[:12]}…)")
    console.print(f"  engine    {plan.opts.backend} · model {plan.model_label}")
    console.print(f"  template  {plan.template.name} ({plan.template.path}, sha256 {plan.template.sha[:12]}…)")
    console.print(f"  sampling  {json.dumps(plan.sampling.to_dict())}")
    console.print(f"  out       {plan.opts.out}")
    compiled = plan.template.compile()
    for row in plan.problems.head(3).iter_rows(named=True):
        prompt = plan.template.render(variables(row, plan.examples), compiled)
        body = prompt if isinstance(prompt, str) else "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in prompt)
        console.print(Panel(body, title=f"prompt · {row['problem_id']}", expand=False, highlight=False), markup=False)
    console.print("dry run: no model loaded, nothing written")


def _print_summary(result) -> None:
    from rich.console import Console
    from rich.table import Table

    c, s = result.counts, result.manifest["timings"]["sessions"][-1]
    table = Table(title=f"curate generate · {result.status}", show_header=False)
    table.add_row("problems", f"{c['problems']:,}")
    table.add_row("samples", f"{c['samples_done']:,} / {c['samples_expected']:,} ({s['samples']:,} this session)")
    table.add_row("finish reasons", ", ".join(f"{k} {v:,}" for k, v in sorted(c["finish_reasons"].items())) or "-")
    table.add_row("tokens", f"{c['prompt_tokens']:,} prompt · {c['completion_tokens']:,} completion")
    if a := result.manifest.get("adaptive"):
        table.add_row("until correct", f"{a['solved']:,} problems with {a['until_correct']} correct · "
                      f"{a['exhausted']:,} at --max-samples {a['max_samples']} without · {a['rounds']} rounds")
    tps = s.get("output_tokens_per_s")
    table.add_row("this session", f"{s['seconds']:.1f} s ({s['load_seconds']:.1f} s loading)"
                  + (f" · {tps:,.1f} output tok/s" if tps else ""))
    table.add_row("shards", f"{c['shards']} in {result.out}")
    Console().print(table)


@stage(cli, "filter", "filter")
def filter_(given: dict):
    try:
        result = api.filter(**given)
    except KeyboardInterrupt:
        click.echo(f"interrupted: finished shards are saved in {given['out']}; re-run the same command to resume",
                   err=True)
        sys.exit(130)
    _print_funnel(result.manifest["funnel"], given["out"])


def _print_funnel(funnel: dict, out: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"curate filter · funnel · {out}")
    for col, justify in (("filter", "left"), ("rows in", "right"), ("dropped", "right"), ("kept", "right"),
                         ("top reasons", "left")):
        table.add_column(col, justify=justify)
    for step in funnel["steps"]:
        reasons = ", ".join(f"{r} {n:,}" for r, n in list(step["by_reason"].items())[:3])
        table.add_row(step["filter"], f"{step['rows_in']:,}", f"{step['dropped']:,}", f"{step['kept']:,}", reasons)
    table.add_row("total", f"{funnel['rows_in']:,}", f"{funnel['rejected']:,}", f"{funnel['kept']:,}", "", style="bold")
    Console().print(table)


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--limit", default=3, show_default=True, type=click.IntRange(min=1), help="How many samples to show.")
@click.option("--max-chars", default=1200, show_default=True, type=int, help="Cut long completions.")
def show(run_dir, limit, max_chars):
    """Print a few samples of a run: problem, reasoning, answer, final vs reference."""
    from rich.console import Console
    from rich.panel import Panel

    from curate.store import read_run

    df = read_run(run_dir)
    console = Console()
    for row in df.head(limit).iter_rows(named=True):
        text = row["completion"] or f"(no completion: {row['error']})"
        if len(text) > max_chars:
            text = text[:max_chars] + f" … [{len(text) - max_chars} more chars]"
        console.print(Panel(
            f"{row['problem']}\n\n── completion ({row['finish_reason']}, {row['completion_tokens']} tokens) ──\n"
            f"{text}\n\n"
            f"── final answer: {row['final_answer']!s} · reference: {row['reference_answer']!s}",
            title=row["sample_id"], expand=False, highlight=False), markup=False)
    console.print(f"{df.height} samples in {run_dir}")


@cli.group()
def templates():
    """List, show and render prompt templates (prompts/)."""


@templates.command("list")
def templates_list():
    """The built-in templates."""
    from curate.templates import builtin_names, load_template

    for name in builtin_names():
        t = load_template(name)
        click.echo(f"{name:20s} {t.description}")


@templates.command("show")
@click.argument("template")
def templates_show(template):
    """Print a template's source (copy it to make your own)."""
    from curate.templates import load_template

    click.echo(load_template(template).source, nl=False)


@templates.command("render")
@click.argument("template")
@click.option("--problem", default="What is 17 * 24?", show_default=True)
@click.option("--reference-answer", default="408", show_default=True)
@click.option("--final-answer", default="408", show_default=True, help="For the judge template.")
@click.option("--examples", default=None, type=click.Path(dir_okay=False))
@click.option("--var", "extra", multiple=True, help="KEY=VALUE, another variable (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print chat messages as JSON.")
def templates_render(template, problem, reference_answer, final_answer, examples, extra, as_json):
    """Render TEMPLATE on one problem and print the prompt."""
    from curate.templates import load_examples, load_template

    t = load_template(template)
    variables = {"problem": problem, "reference_answer": reference_answer, "final_answer": final_answer,
                 "problem_id": "example", "domain": "math", "source": "cli", "tests": None}
    variables.update(pairs(extra, "--var", parse=lambda value: value))  # an empty value is allowed
    if examples:
        variables["examples"] = load_examples(examples)[0]
    out = t.render(variables)
    if isinstance(out, str):
        click.echo(out)
    elif as_json:
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        for m in out:
            click.echo(f"[{m['role']}]\n{m['content']}\n")


@cli.group()
def train():
    """Train students on curate data: SFT distillation and R1-style GRPO (TRL)."""


@stage(cli, "select", "select")
def select_(given: dict):
    c = api.select(**given).counts
    correct = f"{c['correct']:,} correct" if c["correct"] is not None else "correctness unknown (no math/code filter)"
    click.echo(f"selected {c['selected']:,} rows for {c['problems_selected']:,} problems ({c['problems_in_band']:,} of "
               f"{c['problems']:,} in the pass-rate band; {correct} of {c['generated']:,} generated, "
               f"{c['kept']:,} kept) -> {given['out']}")


@stage(cli, "mix", "mix")
def mix_(given: dict):
    out, m = given["out"], api.mix(**given).manifest
    for s in m["sources"]:
        click.echo(f"{s['name']:12s} requested {s['requested']:,} · available {s['available']:,} · delivered "
                   f"{s['delivered']:,}{' (up-sampled)' if s['upsampled'] else ''}")
    splits = ", ".join(f"{k} {v:,}" for k, v in m["splits"].items())
    click.echo(f"dataset: {out}/dataset ({splits}) · Parquet: {out}/data · card: {out}/README.md")


@stage(cli, "card", "card")
def card_(given: dict):
    path = api.card(**given).out
    click.echo(f"card: {path} (metadata checked offline) · plots: {path.parent / 'plots'}")


@stage(cli, "publish", "publish")
def publish(given: dict):
    result = api.publish(**given)
    if result.plan is not None:
        from curate.publish import describe

        click.echo(describe(result.plan))
        return
    record = result.manifest
    click.echo(f"published {len(record['files'])} files ({record['rows']:,} rows) to {record['repo_url']} "
               f"at {record['revision']}: {record['commit_url']}")


@stage(cli, "report", "report")
def report(given: dict):
    click.echo(f"report: {api.report(**given).out}")


@stage(cli, "audit", "audit")
def audit(given: dict):
    from curate.audit import summary_lines

    result = api.audit(**given)
    for line in summary_lines(result.manifest):
        click.echo(line)
    for group in result.manifest["disagreements"]:
        click.echo(f"  {group['count']:>6}  {group['kind']}: {group['cause']}")
    click.echo(f"audit: {result.out}")


@stage(train, "sft", "train_sft", context_settings={"max_content_width": 110})
def train_sft(given: dict):
    if api.train_sft(**given).status == "interrupted":  # sft said so in one line
        sys.exit(130)


@stage(train, "grpo", "train_grpo")
def train_grpo(given: dict):
    out, m = given["out"], api.train_grpo(**given).manifest
    last = m.get("last_metrics") or {}
    parts = ", ".join(f"{name} {last[f'rewards/{name}/mean']:.3f}" for name in m["rewards"]
                      if f"rewards/{name}/mean" in last)
    click.echo(f"{'already complete: ' if m.get('already_complete') else ''}{m['steps']} steps on "
               f"{m['data']['rows']:,} prompts ({m['generation']}); last step: reward "
               f"{last.get('reward', float('nan')):.3f} ({parts}), kl {last.get('kl', float('nan')):.4f} "
               f"-> {out}/model")


@stage(cli, "eval", "evaluate",
       click.Option(["--json", "as_json"], is_flag=True, help="Print results.json instead of the table."))
def eval_(given: dict, as_json: bool):
    out, m = given["out"], api.evaluate(**given).manifest
    if as_json:
        click.echo(json.dumps({k_: m[k_] for k_ in ("model", "k", "sampling", "template", "results")}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t, top_p = m["sampling"]["temperature"], m["sampling"]["top_p"]
    table = Table(title=f"curate eval · {m['model']} · k={m['k']} · T={t} top-p={top_p}")
    for col in ("benchmark", "problems", "pass@1", "± s.e.", f"maj@{m['k']}", "answered", "truncated", "mean tokens"):
        table.add_column(col, justify="left" if col == "benchmark" else "right")
    for r in m["results"].values():
        table.add_row(r["benchmark"], f"{r['problems']:,}", f"{100 * r['pass@1']:.1f}",
                      f"{100 * r['pass@1_stderr']:.1f}", f"{100 * r['maj@k']:.1f}", f"{100 * r['answered']:.0f}%",
                      f"{100 * r['truncated']:.0f}%", f"{r['mean_completion_tokens']:,.0f}")
    Console().print(table)
    click.echo(f"results: {out}/results.json")


@stage(cli, "run", "run_recipe")
def run_(given: dict):
    from curate.recipe import describe
    from curate.store import sigterm_interrupts

    with sigterm_interrupts():  # SIGTERM stops the running stage as Ctrl-C does; re-running resumes
        result = api.run_recipe(**given, echo=click.echo)
    if result.plan is not None:
        click.echo(describe(result.plan))
        click.echo("dry run: nothing run, nothing written")
        return
    state = result.manifest
    done = sum(1 for s in state["stages"].values() if s["status"] == "complete")
    click.echo(f"{state['recipe']['name']}: {done} of {len(state['stages'])} stages complete in {result.out} "
               f"(record: {result.out}/recipe.json)")


def main() -> None:
    cli(prog_name="curate")


if __name__ == "__main__":
    main()
