"""The `curate` command line. Each command imports its machinery when it runs, so
`curate --help` starts in a fraction of a second (no torch, vLLM or datasets)."""

from __future__ import annotations

import json
import sys

import click

from curate import __version__
from curate.errors import CurateError


class Group(click.Group):
    """Every CurateError becomes one line on stderr and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CurateError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(e.exit_code)


def _pairs(items, option: str, form: str = "KEY=VALUE", parse=str) -> dict:
    """Repeatable KEY=VALUE options as a dict; a malformed one is one line naming the option."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or (not value and parse is str):
            raise CurateError(f"{option} {item!r}: expected {form}")
        out[key] = parse(value)
    return out


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="curate")
def cli():
    """Build DeepSeek-R1-style reasoning data: generate, filter, select, mix, publish, train."""


@cli.command()
@click.option("--input", "input_path", required=True, help="Problems: .jsonl, .json, .parquet, a datasets folder, or a Hub dataset name.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory (created; re-running resumes).")
@click.option("--model", default=None, help="Teacher: Hub name or local folder (vllm/transformers) or served name (openai). Default: the embedded SmolLM2-135M-Instruct.")
@click.option("--backend", type=click.Choice(["vllm", "openai", "transformers"]), default="vllm", show_default=True)
@click.option("--template", default="reasoning_chat", show_default=True, help="Built-in template name or a path to a .jinja file.")
@click.option("--examples", default=None, type=click.Path(dir_okay=False), help="Few-shot examples (.jsonl/.json) for templates that use `examples`.")
@click.option("-n", "--num-samples", default=1, show_default=True, type=click.IntRange(min=1), help="Samples per problem.")
@click.option("--max-tokens", default=4096, show_default=True, type=int)
@click.option("--temperature", default=0.6, show_default=True, type=float, help="R1's recommendation: 0.6.")
@click.option("--top-p", default=0.95, show_default=True, type=float, help="R1's recommendation: 0.95.")
@click.option("--seed", default=0, show_default=True, type=int, help="Run seed; each problem's sampling seed derives from it.")
@click.option("--stop", multiple=True, help="Extra stop string (repeatable); added to the template's own.")
@click.option("--split", default="train", show_default=True, help="Split of a Hub dataset or DatasetDict folder.")
@click.option("--problem-column", default=None, help="Default: problem, question, prompt or instruction.")
@click.option("--answer-column", default=None, help="Reference answers. Default: answer, reference_answer or final_answer.")
@click.option("--id-column", default=None, help="Stable problem ids. Default: a hash of source + problem text.")
@click.option("--domain", default=None, help="Domain for every row (default: the input's `domain` column, else math).")
@click.option("--source", default=None, help="Source name for every row (default: the input's `source` column, else its name).")
@click.option("--limit", default=None, type=int, help="Use only the first N problems.")
@click.option("--base-url", default=None, help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (default: $OPENAI_BASE_URL).")
@click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True, help="Environment variable that holds the API key (never logged).")
@click.option("--concurrency", default=32, show_default=True, type=click.IntRange(min=1), help="openai: requests in flight.")
@click.option("--max-retries", default=6, show_default=True, type=click.IntRange(min=0), help="openai: retries per call on 429/5xx/timeouts.")
@click.option("--request-timeout", default=600.0, show_default=True, type=click.FloatRange(min=0, min_open=True), help="openai: seconds per call.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1), help="transformers: prompts per generate call.")
@click.option("--max-model-len", default=None, type=int, help="vllm: context length.")
@click.option("--tensor-parallel-size", default=None, type=int, help="vllm (GPU): GPUs per engine.")
@click.option("--kv-cache-gb", default=None, type=float, help="vllm (CPU): KV-cache size in GiB (default 2).")
@click.option("--dtype", default=None, help="Model dtype (default: float32 on CPU, auto on GPU).")
@click.option("--shard-rows", default=1000, show_default=True, type=int, help="Rows per Parquet shard.")
@click.option("--flush-seconds", default=60.0, show_default=True, type=float, help="Write a shard at least this often.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run with a different config.")
@click.option("--dry-run", is_flag=True, help="Render the first prompts and print the plan; load no model, write nothing.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--verbose", is_flag=True, help="Show the engine's own output (vLLM, torch) on the terminal instead of in the run's log.")
def generate(input_path, out, model, backend, template, examples, num_samples, max_tokens, temperature, top_p, seed,
             stop, split, problem_column, answer_column, id_column, domain, source, limit, base_url, api_key_env,
             concurrency, max_retries, request_timeout, batch_size, max_model_len, tensor_parallel_size, kv_cache_gb, dtype, shard_rows,
             flush_seconds, overwrite, dry_run, no_progress, verbose):
    """Batch-generate NUM_SAMPLES completions per problem into a resumable run directory."""
    import os

    from curate import generate as gen
    from curate.inputs import InputSpec

    opts = gen.GenerateOptions(
        input=InputSpec(path=input_path, split=split, problem_column=problem_column, answer_column=answer_column,
                        id_column=id_column, limit=limit, domain=domain, source=source),
        out=out, model=model, backend=backend, template=template, examples=examples, num_samples=num_samples,
        max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed, stop=tuple(stop),
        overwrite=overwrite, dry_run=dry_run, shard_rows=shard_rows, flush_seconds=flush_seconds, verbose=verbose,
        engine={"base_url": base_url or os.environ.get("OPENAI_BASE_URL"), "api_key_env": api_key_env,
                "concurrency": concurrency, "max_retries": max_retries, "timeout": request_timeout,
                "batch_size": batch_size, "max_model_len": max_model_len,
                "tensor_parallel_size": tensor_parallel_size, "kv_cache_gb": kv_cache_gb, "dtype": dtype},
        command=["curate", *sys.argv[1:]],
    )
    if backend == "openai" and not opts.engine["base_url"]:
        raise CurateError("--base-url is required with --backend openai (or set OPENAI_BASE_URL)")
    plan = gen.plan(opts)
    if dry_run:
        _print_plan(plan)
        return
    from curate.backends.base import TransientBackendError

    gen.install_sigterm_handler()
    click.echo(f"generate: {plan.problems.height} problems × {plan.sampling.n} samples, {plan.model_label} on {backend} -> "
               f"{out}" + ("" if verbose else f" (engine output: {plan.store.log_path})"))
    try:
        summary = gen.run(plan, progress=not no_progress)
    except KeyboardInterrupt:
        click.echo(f"interrupted: finished samples are saved in {out}; re-run the same command to resume", err=True)
        sys.exit(130)
    except TransientBackendError as e:
        click.echo(f"error: {e}; finished samples are saved in {out}; re-run the same command to retry", err=True)
        sys.exit(1)
    _print_summary(summary, plan)
    if summary["counts"]["samples_done"] < summary["counts"]["samples_expected"]:
        sys.exit(1)


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
    console.print(f"  input     {plan.input_info['path']} ({plan.input_info['kind']}, sha256 {str(plan.input_info['sha256'])[:12]}…)")
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


def _print_summary(summary: dict, plan) -> None:
    from rich.console import Console
    from rich.table import Table

    c, s = summary["counts"], summary["session"]
    table = Table(title=f"curate generate · {summary['status']}", show_header=False)
    table.add_row("problems", f"{c['problems']:,}")
    table.add_row("samples", f"{c['samples_done']:,} / {c['samples_expected']:,} ({s['samples']:,} this session)")
    table.add_row("finish reasons", ", ".join(f"{k} {v:,}" for k, v in sorted(c["finish_reasons"].items())) or "-")
    table.add_row("tokens", f"{c['prompt_tokens']:,} prompt · {c['completion_tokens']:,} completion")
    tps = s.get("output_tokens_per_s")
    table.add_row("this session", f"{s['seconds']:.1f} s ({s['load_seconds']:.1f} s loading)"
                  + (f" · {tps:,.1f} output tok/s" if tps else ""))
    table.add_row("shards", f"{c['shards']} in {summary['out']}")
    Console().print(table)


@cli.command("filter")
@click.option("--input", "input_path", required=True, help="A generate run folder, a folder of Parquet files, a .parquet/.jsonl file, or a Hub dataset name.")
@click.option("--split", default="train", show_default=True, help="Split of a Hub dataset.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder: kept/, rejected/, manifest.json.")
@click.option("--chain", "chain_path", default=None, type=click.Path(dir_okay=False), help="Chain YAML (filters in order, with parameters). Default: the shipped chain.")
@click.option("--filters", "filter_names", default=None, help="Comma list of filters with default parameters, e.g. format,length,math.")
@click.option("--map", "mapping", multiple=True, help="COLUMN=INPUT_COLUMN: read a column under another name (repeatable).")
@click.option("--workers", default=None, type=click.IntRange(min=1), help="Processes for per-row filters (default: all cores).")
@click.option("--overwrite", is_flag=True, help="Replace an existing filter run with a different config.")
@click.option("--no-progress", is_flag=True)
def filter_(input_path, split, out, chain_path, filter_names, mapping, workers, overwrite, no_progress):
    """Run the filter chain; every dropped row is kept in rejected/ with its reason."""
    from curate import chain

    column_map = _pairs(mapping, "--map", "COLUMN=INPUT_COLUMN")
    opts = chain.FilterOptions(input=input_path, out=out, chain=chain_path, filters=filter_names, split=split,
                               column_map=column_map, overwrite=overwrite, progress=not no_progress,
                               command=["curate", *sys.argv[1:]], **({"workers": workers} if workers else {}))
    p = chain.plan(opts)
    try:
        manifest = chain.run(p)
    except KeyboardInterrupt:
        click.echo(f"interrupted: finished shards are saved in {out}; re-run the same command to resume", err=True)
        sys.exit(130)
    _print_funnel(manifest["funnel"], out)


def _print_funnel(funnel: dict, out: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"curate filter · funnel · {out}")
    for col, justify in (("filter", "left"), ("rows in", "right"), ("dropped", "right"), ("kept", "right"), ("top reasons", "left")):
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
            f"{row['problem']}\n\n── completion ({row['finish_reason']}, {row['completion_tokens']} tokens) ──\n{text}\n\n"
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
    variables.update(_pairs(extra, "--var", parse=lambda value: value))  # an empty value is allowed
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


# --- select / mix / card / publish / report ---


@cli.command("select")
@click.option("--input", "input_path", required=True, type=click.Path(), help="A `curate filter` output folder.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder: data/, problems.parquet, manifest.json.")
@click.option("--policy", type=click.Choice(["all", "one", "best-k"]), default="all", show_default=True,
              help="Per problem, from the kept rows: all of them, one, or the k best by --score.")
@click.option("--one-by", type=click.Choice(["random", "shortest", "longest"]), default="random", show_default=True,
              help="--policy one: which row (random is seeded).")
@click.option("--max-per-problem", default=None, type=click.IntRange(min=1), help="At most N rows per problem (the k of best-k).")
@click.option("--score", default=None, help="--policy best-k: the column to rank by (e.g. language_ratio).")
@click.option("--score-order", type=click.Choice(["desc", "asc"]), default="desc", show_default=True)
@click.option("--pass-rate-band", nargs=2, type=float, default=None, metavar="LOW HIGH",
              help="Keep only problems whose pass rate (correct / generated) lies in [LOW, HIGH].")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--overwrite", is_flag=True, help="Replace an existing select run with a different config.")
@click.option("--no-progress", is_flag=True)
def select_(input_path, out, policy, one_by, max_per_problem, score, score_order, pass_rate_band, seed, overwrite, no_progress):
    """Rejection sampling: pick samples per problem from a filter run; pass rates per problem."""
    from curate import select

    m = select.run(select.SelectOptions(
        input=input_path, out=out, policy=policy, one_by=one_by, max_per_problem=max_per_problem, score=score,
        score_order=score_order, pass_rate_band=tuple(pass_rate_band) if pass_rate_band else None, seed=seed,
        overwrite=overwrite, progress=not no_progress, command=["curate", *sys.argv[1:]]))
    c = m["counts"]
    correct = f"{c['correct']:,} correct" if c["correct"] is not None else "correctness unknown (no math/code filter)"
    click.echo(f"selected {c['selected']:,} rows for {c['problems_selected']:,} problems ({c['problems_in_band']:,} of "
               f"{c['problems']:,} in the pass-rate band; {correct} of {c['generated']:,} generated, "
               f"{c['kept']:,} kept) -> {out}")


@cli.command("mix")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder: data/, dataset/, README.md, plots/, manifest.json.")
@click.option("--source", "sources", multiple=True, required=True, metavar="NAME=PATH:COUNT_OR_RATIO",
              help="A source and its target: an exact count (600000) or a ratio of --total (0.75 or 75%). Repeatable.")
@click.option("--total", default=None, type=int, help="Total rows; needed by ratio targets, checked against counts.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--test-size", default=None, type=float, help="Share of rows (whole problems) in a test split.")
@click.option("--allow-upsample", is_flag=True, help="Let a target exceed its source: rows are repeated (and the card says so).")
@click.option("--tokenizer", default=None, help="Tokenizer for num_tokens (name or folder). Default: the embedded SmolLM2's.")
@click.option("--no-cot", multiple=True, metavar="NAME", help="Source whose answers go without a chain of thought (an empty think block).")
@click.option("--missing-think", type=click.Choice(["empty", "drop"]), default="empty", show_default=True,
              help="Rows without a <think> block: write an empty one, or drop them.")
@click.option("--license", "license_", default="other", show_default=True, help="The dataset's licence for the card.")
@click.option("--source-license", "source_licenses", multiple=True, metavar="NAME=LICENSE",
              help="A source's own licence, shown in the card (repeatable).")
@click.option("--language", default="en", show_default=True, help="Comma list of language codes for the card.")
@click.option("--pretty-name", default=None, help="The card's title (default: the folder name).")
@click.option("--workers", default=None, type=click.IntRange(min=1), help="Processes that count tokens (default: all cores).")
@click.option("--overwrite", is_flag=True, help="Replace an existing mix with a different config.")
@click.option("--no-progress", is_flag=True)
def mix_(out, sources, total, seed, test_size, allow_upsample, tokenizer, no_cot, missing_think, license_,
         source_licenses, language, pretty_name, workers, overwrite, no_progress):
    """Mix sources into a DatasetDict with exact counts, Hub Parquet shards and a dataset card."""
    from curate import mix

    licenses = _pairs(source_licenses, "--source-license", "NAME=LICENSE, e.g. gsm8k=mit")

    m = mix.run(mix.MixOptions(
        out=out, sources=list(sources), total=total, seed=seed, test_size=test_size, allow_upsample=allow_upsample,
        tokenizer=tokenizer, no_cot=tuple(no_cot), missing_think=missing_think, license=license_,
        source_licenses=licenses, language=tuple(x.strip() for x in language.split(",") if x.strip()), pretty_name=pretty_name,
        overwrite=overwrite, progress=not no_progress, command=["curate", *sys.argv[1:]],
        **({"workers": workers} if workers else {})))
    for s in m["sources"]:
        click.echo(f"{s['name']:12s} requested {s['requested']:,} · available {s['available']:,} · delivered "
                   f"{s['delivered']:,}{' (up-sampled)' if s['upsampled'] else ''}")
    splits = ", ".join(f"{k} {v:,}" for k, v in m["splits"].items())
    click.echo(f"dataset: {out}/dataset ({splits}) · Parquet: {out}/data · card: {out}/README.md")


@cli.command("card")
@click.argument("mix_dir", type=click.Path(file_okay=False))
@click.option("--license", "license_", default=None, help="Override the licence recorded by mix.")
@click.option("--language", default=None, help="Override the languages (comma list).")
@click.option("--pretty-name", default=None, help="Override the title.")
def card_(mix_dir, license_, language, pretty_name):
    """(Re)write the dataset card README.md and plots/ of a mix folder, and check it offline."""
    from curate import card

    path = card.write_card(mix_dir, license=license_, pretty_name=pretty_name,
                           language=[x.strip() for x in language.split(",")] if language else None)
    click.echo(f"card: {path} (metadata checked offline) · plots: {path.parent / 'plots'}")


@cli.command()
@click.argument("directory", metavar="DIR", type=click.Path())
@click.option("--repo", required=True, help="Hub dataset repo, USER/NAME (created if missing).")
@click.option("--private", is_flag=True, help="Create the repo private (an existing repo keeps its visibility).")
@click.option("--revision", default=None, help="Branch to commit to (created if missing). Default: main.")
@click.option("--dry-run", is_flag=True, help="Check everything, print the files and the card; upload nothing.")
def publish(directory, repo, private, revision, dry_run):
    """Upload a `curate mix` output (shards, card, plots, manifest) to the Hub in one commit.

    The token comes from HF_TOKEN or `hf auth login`; it is never printed or written."""
    from curate import publish as pub

    p = pub.plan(directory, repo, revision, private)
    if dry_run:
        click.echo(pub.describe(p))
        return
    record = pub.push(p, pub.get_token(), log=lambda line: click.echo(line, err=True))
    click.echo(f"published {len(record['files'])} files ({record['rows']:,} rows) to {record['repo_url']} "
               f"at {record['revision']}: {record['commit_url']}")


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="The HTML file. Default: RUN_DIR/report.html.")
@click.option("--samples", default=200, show_default=True, type=click.IntRange(min=1),
              help="Problems in the sample browser (a seeded random sample when the run has more).")
@click.option("--language-sample", default=2000, show_default=True, type=click.IntRange(min=1),
              help="Rows to run language ID on when the run has no language scores.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--no-progress", is_flag=True)
def report(run_dir, out, samples, language_sample, seed, no_progress):
    """One self-contained HTML page: funnel, lengths, pass rates, languages, kept vs rejected traces."""
    from curate import report as rep

    path = rep.write_report(run_dir, out, samples=samples, language_sample=language_sample, seed=seed,
                            progress=not no_progress)
    click.echo(f"report: {path}")


# --- train sft ---


@train.command("sft", context_settings={"max_content_width": 110})
@click.option("--student", default=None, help="Model to train: Hub name, local folder, or `embedded` (SmolLM2-135M-Instruct).")
@click.option("--data", default=None, help="A `curate mix` folder, a datasets folder, Parquet/JSONL with `messages`, or a Hub dataset.")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Output: checkpoints, the final model, manifest.json (required unless --lint-only).")
@click.option("--config", default=None, help="Recipe: a built-in name (e.g. r1-distill-qwen-1.5b) or a YAML file; flags override it.")
@click.option("--split", default=None, help="Split of a DatasetDict or Hub dataset [train].")
@click.option("--limit", default=None, type=click.IntRange(min=1), help="Train on the first N rows only.")
@click.option("--epochs", default=None, type=float, help="Epochs [2, as R1's SFT].")
@click.option("--max-steps", default=None, type=int, help="Stop after N optimizer steps (overrides --epochs).")
@click.option("--lr", default=None, type=float, help="Peak learning rate [2e-5].")
@click.option("--batch-size", default=None, type=click.IntRange(min=1), help="Rows per device per step [8].")
@click.option("--grad-accum", default=None, type=click.IntRange(min=1), help="Gradient accumulation steps [1].")
@click.option("--max-length", default=None, type=click.IntRange(min=1), help="Tokens per row (packed sequence with --packing) [32768].")
@click.option("--loss", default=None, type=click.Choice(["completion", "assistant", "all"]),
              help="Trained tokens: the last assistant turn (any template) | every assistant turn ({% generation %}) | all [completion].")
@click.option("--lora-r", default=None, type=click.IntRange(min=0), help="LoRA rank (peft, all linear layers); 0 = full fine-tune [0].")
@click.option("--lora-alpha", default=None, type=int, help="LoRA alpha [2 × rank].")
@click.option("--packing/--no-packing", default=None, help="BFD packing, padding-free (needs a flash-attention kernel) [off].")
@click.option("--padding-free/--no-padding-free", default=None, help="Padding-free batches (with --packing) [off].")
@click.option("--gradient-checkpointing/--no-gradient-checkpointing", default=None, help="[on with a GPU, off on CPU]")
@click.option("--group-by-length/--no-group-by-length", default=None, help="Batches of similar length (less padding) [on without --packing].")
@click.option("--bf16/--no-bf16", default=None, help="[on where the GPU supports it]")
@click.option("--liger/--no-liger", default=None, help="Liger kernels [on where installed, with a GPU].")
@click.option("--attn-implementation", default=None, help="e.g. flash_attention_2 [transformers' default: sdpa].")
@click.option("--chat-template", default=None, type=click.Path(dir_okay=False), help="A .jinja chat template for the student.")
@click.option("--eos-token", default=None, help="The token the student stops at (e.g. '<|im_end|>' for a base model).")
@click.option("--pad-token", default=None, help="Pad token [the tokenizer's, or a distinct special token when it is the EOS].")
@click.option("--warmup-ratio", default=None, type=float, help="[0.03]")
@click.option("--lr-scheduler", default=None, help="transformers scheduler name [cosine_with_min_lr, to 10%].")
@click.option("--weight-decay", default=None, type=float, help="[0.0]")
@click.option("--max-grad-norm", default=None, type=float, help="Gradient clipping [1.0].")
@click.option("--seed", default=None, type=int, help="[42]")
@click.option("--save-steps", default=None, type=click.IntRange(min=1), help="Checkpoint every N steps (and at the end) [500].")
@click.option("--save-total-limit", default=None, type=click.IntRange(min=1), help="Keep only the last N checkpoints.")
@click.option("--logging-steps", default=None, type=click.IntRange(min=1), help="[10]")
@click.option("--lint-rows", default=None, type=click.IntRange(min=1), help="Rows the chat-template lint checks [64].")
@click.option("--lint-only", is_flag=True, help="Print a rendered row, its trained tokens and the lint verdict; train nothing.")
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in --out.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier `curate train sft` run in --out.")
@click.option("--push-to-hub", default=None, metavar="REPO", help="Upload the final model to this Hub repo (token from `hf auth login` / HF_TOKEN).")
@click.option("--num-processes", default=None, type=click.IntRange(min=1), help="Train on N GPUs through `accelerate launch`.")
@click.option("--accelerate-config", default=None, help="zero3, fsdp (shipped) or an accelerate YAML; implies `accelerate launch`.")
@click.option("--print-launch", is_flag=True, help="Print the `accelerate launch` line and stop.")
@click.option("--no-progress", is_flag=True)
@click.option("--launched", is_flag=True, hidden=True)
def train_sft(no_progress, **values):
    """Distil a student on curate data with TRL's SFTTrainer, after linting its chat template."""
    from curate.train import sft

    flags = ("lint_only", "resume", "overwrite", "print_launch", "launched")
    values = {k: (v or None) if k in flags else v for k, v in values.items()}
    values["progress"] = False if no_progress else None
    sys.exit(sft.run(values, echo=click.echo, command=["curate", *sys.argv[1:]]))


# --- train grpo / eval ---


def _key_values(items, option: str) -> dict:
    """KEY=VALUE pairs; values read as YAML (numbers, booleans, lists)."""
    import yaml

    return _pairs(items, option, parse=yaml.safe_load)


@train.command("grpo")
@click.option("--policy", required=True, help="The model to train: Hub name or local folder.")
@click.option("--prompts", required=True, help="Problems with reference answers (file, run dir, select output, Hub name), or a `curate mix` output.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory: manifest.json, log.jsonl, checkpoint-N/, model/.")
@click.option("--rewards", default="accuracy,format", show_default=True, help="NAME[:WEIGHT],... of accuracy, format, language, overlong.")
@click.option("--template", default="r1_zero", show_default=True, help="Prompt template for problems (r1_zero: base models; reasoning_chat: chat models).")
@click.option("--answers", default=None, help="Reference answers by problem_id (problems file or run), for prompts that lack them (a mixture).")
@click.option("--split", default="train", show_default=True)
@click.option("--limit", default=None, type=click.IntRange(min=1), help="Use only the first N prompts.")
@click.option("--lang", default="en", show_default=True, help="Target language of the language reward (a row's `language` column wins).")
@click.option("--format-style", type=click.Choice(["think", "r1_zero"]), default=None, help="Default: r1_zero with the r1_zero template, else think.")
@click.option("--num-generations", default=16, show_default=True, type=int, help="Samples per prompt (R1: 16).")
@click.option("--prompts-per-step", default=32, show_default=True, type=int, help="Prompts per optimizer step (R1: 32).")
@click.option("--micro-batch", default=16, show_default=True, type=int, help="Completions per forward/backward pass.")
@click.option("--max-steps", default=-1, show_default=True, type=int, help="Optimizer steps (-1: --epochs over the prompts).")
@click.option("--epochs", default=1.0, show_default=True, type=float)
@click.option("--max-completion-length", default=1024, show_default=True, type=int)
@click.option("--learning-rate", default=3e-6, show_default=True, type=float, help="R1: 3e-6.")
@click.option("--beta", default=0.001, show_default=True, type=float, help="KL coefficient (R1: 0.001; k3 estimator).")
@click.option("--epsilon", default=0.2, show_default=True, type=float, help="Clip range of the ratio.")
@click.option("--temperature", default=1.0, show_default=True, type=float, help="Rollout temperature (R1: 1.0).")
@click.option("--loss-type", default="grpo", show_default=True, help="TRL loss_type (R1: grpo; TRL's default: dapo).")
@click.option("--overlong-buffer", default=256, show_default=True, type=int, help="overlong reward: tokens before the limit where the penalty ramps.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--save-steps", default=100, show_default=True, type=int, help="Checkpoint every N steps (re-running resumes from the last).")
@click.option("--vllm/--no-vllm", "use_vllm", default=None, help="Generate with vLLM (default: when a GPU and vLLM are present).")
@click.option("--trl", "trl_args", multiple=True, help="KEY=VALUE: any other GRPOConfig field (repeatable).")
@click.option("--overwrite", is_flag=True, help="Replace an existing run with a different config.")
@click.option("--no-progress", is_flag=True)
def train_grpo(policy, prompts, out, rewards, template, answers, split, limit, lang, format_style, num_generations,
               prompts_per_step, micro_batch, max_steps, epochs, max_completion_length, learning_rate, beta, epsilon,
               temperature, loss_type, overlong_buffer, seed, save_steps, use_vllm, trl_args, overwrite, no_progress):
    """R1-Zero / R1 reasoning RL: TRL's GRPOTrainer with R1's rule rewards and settings."""
    from curate.train import grpo

    m = grpo.run(grpo.GRPOOptions(
        policy=policy, prompts=prompts, out=out, rewards=rewards, template=template, answers=answers, split=split,
        limit=limit, lang=lang, format_style=format_style, num_generations=num_generations,
        prompts_per_step=prompts_per_step, micro_batch=micro_batch, max_steps=max_steps, epochs=epochs,
        max_completion_length=max_completion_length, learning_rate=learning_rate, beta=beta, epsilon=epsilon,
        temperature=temperature, loss_type=loss_type, overlong_buffer=overlong_buffer, seed=seed,
        save_steps=save_steps, vllm=use_vllm, trl=_key_values(trl_args, "--trl"), overwrite=overwrite,
        progress=not no_progress, command=["curate", *sys.argv[1:]]))
    last = m.get("last_metrics") or {}
    parts = ", ".join(f"{name} {last[f'rewards/{name}/mean']:.3f}" for name in m["rewards"] if f"rewards/{name}/mean" in last)
    click.echo(f"{'already complete: ' if m.get('already_complete') else ''}{m['steps']} steps on "
               f"{m['data']['rows']:,} prompts ({m['generation']}); last step: reward {last.get('reward', float('nan')):.3f}"
               f" ({parts}), kl {last.get('kl', float('nan')):.4f} -> {out}/model")


@cli.command("eval")
@click.option("--model", default=None, help="Hub name or local folder (served name with --backend openai). Default: the embedded SmolLM2-135M-Instruct.")
@click.option("--benchmarks", default="math500", show_default=True, help="Comma list: math500, gsm8k, aime24, aime25, or problems files.")
@click.option("-k", "k", default=16, show_default=True, type=click.IntRange(min=1), help="Samples per problem.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output: <benchmark>/generate/ run dirs, scores, results.json.")
@click.option("--backend", type=click.Choice(["vllm", "openai", "transformers"]), default="vllm", show_default=True)
@click.option("--template", default="reasoning_chat", show_default=True, help="Prompt template (R1's: step by step, answer in \\boxed{}).")
@click.option("--max-tokens", default=32768, show_default=True, type=click.IntRange(min=1), help="R1: 32,768.")
@click.option("--temperature", default=0.6, show_default=True, type=float, help="R1: 0.6.")
@click.option("--top-p", default=0.95, show_default=True, type=float, help="R1: 0.95.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--limit", default=None, type=click.IntRange(min=1), help="Only the first N problems of each benchmark.")
@click.option("--workers", default=None, type=click.IntRange(min=1), help="math-verify processes (default: up to 4).")
@click.option("--verify-timeout", default=5.0, show_default=True, type=click.FloatRange(min=0, min_open=True), help="Seconds per math-verify step.")
@click.option("--base-url", default=None, help="openai backend: server URL (default: $OPENAI_BASE_URL).")
@click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True)
@click.option("--concurrency", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--max-model-len", default=None, type=int, help="vllm: context length.")
@click.option("--tensor-parallel-size", default=None, type=int)
@click.option("--kv-cache-gb", default=None, type=float, help="vllm (CPU): KV-cache size in GiB.")
@click.option("--dtype", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print results.json instead of the table.")
@click.option("--overwrite", is_flag=True, help="Replace existing generations made with a different config.")
@click.option("--no-progress", is_flag=True)
@click.option("--verbose", is_flag=True, help="Show the engine's own output (vLLM, torch) on the terminal instead of in the run's log.")
def eval_(model, benchmarks, k, out, backend, template, max_tokens, temperature, top_p, seed, limit, workers,
          verify_timeout, base_url, api_key_env, concurrency, max_model_len, tensor_parallel_size, kv_cache_gb, dtype,
          as_json, overwrite, no_progress, verbose):
    """k samples per problem, scored with the filters' verifiers: pass@1 (mean over k) ± s.e., maj@k."""
    import os

    from curate.train import eval as ev

    if backend == "openai" and not (base_url or os.environ.get("OPENAI_BASE_URL")):
        raise CurateError("--base-url is required with --backend openai (or set OPENAI_BASE_URL)")
    m = ev.run(ev.EvalOptions(
        benchmarks=benchmarks, out=out, model=model, k=k, backend=backend, template=template, max_tokens=max_tokens,
        temperature=temperature, top_p=top_p, seed=seed, limit=limit, timeout=verify_timeout,
        engine={"base_url": base_url or os.environ.get("OPENAI_BASE_URL"), "api_key_env": api_key_env,
                "concurrency": concurrency, "max_model_len": max_model_len,
                "tensor_parallel_size": tensor_parallel_size, "kv_cache_gb": kv_cache_gb, "dtype": dtype},
        overwrite=overwrite, progress=not no_progress, verbose=verbose, command=["curate", *sys.argv[1:]],
        **({"workers": workers} if workers else {})))
    if as_json:
        click.echo(json.dumps({k_: m[k_] for k_ in ("model", "k", "sampling", "template", "results")}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"curate eval · {m['model']} · k={m['k']} · T={m['sampling']['temperature']} top-p={m['sampling']['top_p']}")
    for col in ("benchmark", "problems", "pass@1", "± s.e.", f"maj@{m['k']}", "answered", "truncated", "mean tokens"):
        table.add_column(col, justify="left" if col == "benchmark" else "right")
    for r in m["results"].values():
        table.add_row(r["benchmark"], f"{r['problems']:,}", f"{100 * r['pass@1']:.1f}", f"{100 * r['pass@1_stderr']:.1f}",
                      f"{100 * r['maj@k']:.1f}", f"{100 * r['answered']:.0f}%", f"{100 * r['truncated']:.0f}%",
                      f"{r['mean_completion_tokens']:,.0f}")
    Console().print(table)
    click.echo(f"results: {out}/results.json")


def main() -> None:
    cli(prog_name="curate")


if __name__ == "__main__":
    main()
