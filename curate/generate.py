"""`curate generate`: problems → rendered prompts → k samples each → Parquet shards.

Order of work, so that bad input never leaves anything behind:
1. validate options, read and validate every problem, render every prompt once
   (a template error names the row), compare the config with an existing run;
2. only then create the run dir, take its lock and load the engine;
3. stream requests through the backend, writing a shard every `shard_rows` rows or
   `flush_seconds` seconds, and the manifest after each shard.

Resume: the (problem_id, sample index) pairs already in the shards are skipped, so
re-running the same command finishes the run, and the rows are exactly those of an
uninterrupted run: sampling is seeded per problem (base.derive_seed), never by order.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from curate import __version__, adaptive
from curate.backends.base import R1_TEMPERATURE, R1_TOP_P, Request, Sample, Sampling, derive_seed, split_prefill
from curate.backends.budget import check_budget
from curate.errors import CurateError
from curate.inputs import InputSpec, load_problems
from curate.options import nested, opt
from curate.parsing import parse_completion
from curate.progress import Progress
from curate.quiet import EngineOutput
from curate.schema import GENERATION_SCHEMA, sample_id
from curate.store import RunStore, now, open_run
from curate.templates import Template, load_examples, load_template

log = logging.getLogger("curate.generate")

@dataclass
class EngineOptions:
    """Backend options; each backend reads the ones it knows."""

    base_url: tuple[str, ...] = opt((), "OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (default: "
                                        "$OPENAI_BASE_URL); repeat it or give a comma list for a fleet.")
    api_key_env: str = opt("OPENAI_API_KEY", "Environment variable that holds the API key (never logged).")
    concurrency: int = opt(32, "openai: requests in flight per server.", min=1)
    max_retries: int = opt(6, "openai: retries per call on 429/5xx/timeouts.", min=0)
    timeout: float = opt(600.0, "openai: seconds per call.", name="request_timeout", cli="--request-timeout", min=0,
                         min_open=True)
    batch_size: int = opt(8, "transformers: prompts per generate call.", min=1)
    max_model_len: int | None = opt(None, "vllm: context length.")
    tensor_parallel_size: int | None = opt(None, "vllm (GPU): GPUs per engine.")
    replica_cpus: int | None = opt(None, "--executor ray (CPU cluster): CPUs per replica (default 1).", min=1)
    kv_cache_gb: float | None = opt(None, "vllm (CPU): KV-cache size in GiB (default 2).")
    dtype: str | None = opt(None, "Model dtype (default: float32 on CPU, auto on GPU).")
    gpu_memory_utilization: float | None = opt(None, "vllm (GPU): share of GPU memory (default 0.9).", cli=False)
    max_inflight: int | None = opt(None, "vllm: requests queued in the engine at once (default 1024).", cli=False)
    trust_remote_code: bool = opt(False, "Run the model repository's own code.", cli=False)
    llm: object = opt(None, "vllm: an already loaded vllm.LLM to generate with.", cli=False)

    def to_dict(self) -> dict:
        """The options that are set, as the backends take them."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass
class GenerateOptions:
    input: InputSpec = nested(InputSpec, "Where the problems come from.", required=True)
    out: str = opt(help="Run directory (created; re-running resumes).", path="dir")
    model: str | None = opt(None, "Teacher: Hub name or local folder (vllm/transformers) or served name (openai). "
                                  "Default: the embedded SmolLM2-135M-Instruct.")
    backend: str = opt("vllm", "The engine.", choices=("vllm", "openai", "transformers"))
    executor: str = opt("local", "Where the engine runs: this process, or replicas on a Ray cluster.",
                        choices=("local", "ray"))
    ray_address: str | None = opt(None, "--executor ray: the cluster (HOST:PORT, ray://..., auto); default "
                                        "$RAY_ADDRESS, else a Ray started on this machine.")
    replicas: int = opt(1, "--executor ray: engine replicas, fed from one queue.", min=1)
    template: str = opt("reasoning_chat", "Built-in template name or a path to a .jinja file.")
    examples: str | None = opt(None, "Few-shot examples (.jsonl/.json) for templates that use `examples`.", path="file")
    num_samples: int = opt(1, "Samples per problem.", short="-n", min=1)
    max_tokens: int = opt(4096, "Tokens per sample at most.")
    temperature: float = opt(R1_TEMPERATURE, "R1's recommendation: 0.6.")
    top_p: float = opt(R1_TOP_P, "R1's recommendation: 0.95.")
    seed: int | None = opt(0, "Run seed; each problem's sampling seed derives from it.")
    stop: tuple[str, ...] = opt((), "Extra stop string (repeatable); added to the template's own.")
    until_correct: int | None = opt(None, "Adaptive rejection sampling: sample in rounds until a problem has K correct "
                                          "samples (math: reference answers; code: tests), up to --max-samples.",
                                    metavar="K")
    max_samples: int | None = opt(None, "With --until-correct: the most samples a problem gets.", metavar="M")
    min_think_tokens: int | None = opt(None, "Thinking budget (s1): a think block ended sooner is continued with "
                                             "--wait-text. --backend vllm only (openai/transformers refuse it; "
                                             "see the README).")
    max_think_tokens: int | None = opt(None, "Thinking budget (s1): at this many thinking tokens, --think-end is "
                                             "forced and the model answers (within --max-tokens overall).")
    think_end: str = opt("</think>", "The end-of-thinking delimiter the budget watches and forces.")
    wait_text: str = opt("Wait", "What replaces an early end of thinking (s1: \"Wait\").")
    engine: EngineOptions = nested(EngineOptions, "Backend options.")
    shard_rows: int = opt(1000, "Rows per Parquet shard.")
    flush_seconds: float = opt(60.0, "Write a shard at least this often.")
    overwrite: bool = opt(False, "Replace an existing run with a different config.")
    dry_run: bool = opt(False, "Render the first prompts and print the plan; load no model, write nothing.")
    progress: bool = opt(True, "Show a progress bar (--no-progress: none).", cli="--no-progress")
    verbose: bool = opt(False, "Show engine output (vLLM, transformers) on the terminal too.")
    command: list[str] = opt([], "The command line recorded in the manifest.", cli=False)


@dataclass
class Plan:
    """Everything decided before any work: validated inputs and the run's config."""

    opts: GenerateOptions
    problems: object  # polars DataFrame (curate.inputs)
    input_info: dict
    template: Template
    examples: list | None
    examples_sha: str | None
    model: str
    model_label: str
    sampling: Sampling
    config: dict
    store: RunStore
    resuming: bool


def plan(opts: GenerateOptions) -> Plan:
    _check_options(opts)
    model, label = _resolve_model(opts)
    problems, info = load_problems(opts.input)
    template = load_template(opts.template)
    examples, examples_sha = load_examples(opts.examples) if opts.examples else (None, None)
    stop = tuple(dict.fromkeys([*template.stop, *opts.stop]))
    adaptive.check(opts.until_correct, opts.max_samples, problems, info["path"])
    n = opts.max_samples if opts.until_correct else opts.num_samples
    sampling = Sampling(n, opts.temperature, opts.top_p, opts.max_tokens, opts.seed, stop, opts.min_think_tokens,
                        opts.max_think_tokens, opts.think_end, opts.wait_text)
    _render_all(template, problems, examples, info["path"])
    config = {
        "input": {k: info.get(k) for k in ("sha256", "rows", "problem_column", "answer_column", "id_column")}
        | {"split": opts.input.split, "limit": opts.input.limit, "domain": opts.input.domain,
           "source": opts.input.source},
        "template": {"name": template.name, "sha256": template.sha},
        "examples_sha256": examples_sha,
        "model": label,
        "backend": opts.backend,
        "sampling": sampling.to_dict(),
    } | ({"until_correct": opts.until_correct} if opts.until_correct else {})
    inputs = {
        "problems": info,
        "template": {"name": template.name, "path": template.path, "sha256": template.sha},
        "examples": {"path": opts.examples, "sha256": examples_sha} if opts.examples else None,
    }
    store = open_run(opts.out, "generate", config, overwrite=opts.overwrite, command=opts.command, inputs=inputs)
    return Plan(opts, problems, info, template, examples, examples_sha, model, label, sampling, config, store,
                store.resuming)


def _check_options(opts: GenerateOptions) -> None:
    if opts.num_samples < 1:
        raise CurateError("--num-samples must be at least 1")
    if opts.max_tokens < 1:
        raise CurateError("--max-tokens must be at least 1")
    if opts.temperature < 0:
        raise CurateError("--temperature must be >= 0")
    if not 0 < opts.top_p <= 1:
        raise CurateError("--top-p must be in (0, 1]")
    if opts.temperature == 0 and opts.num_samples > 1:
        raise CurateError(
            f"--num-samples {opts.num_samples} with --temperature 0 gives identical samples; "
            "use a temperature > 0 (R1: 0.6) or --num-samples 1"
        )
    if opts.shard_rows < 1:
        raise CurateError("--shard-rows must be at least 1")
    if opts.backend == "openai" and not opts.model:
        raise CurateError("--model is required with --backend openai (the model name the server serves)")
    if opts.until_correct and opts.num_samples != 1:
        raise CurateError("--num-samples does not apply with --until-correct: --max-samples caps the samples")
    if opts.until_correct and opts.temperature == 0:
        raise CurateError("--until-correct with --temperature 0 draws the same sample again; use a temperature > 0")
    check_budget(opts.min_think_tokens, opts.max_think_tokens, opts.think_end, opts.backend)
    _check_executor(opts)


def _check_executor(opts: GenerateOptions) -> None:
    from curate.backends.ray import check_backend

    if opts.replicas < 1:
        raise CurateError("--replicas must be at least 1")
    if opts.executor == "local" and (opts.replicas > 1 or opts.ray_address):
        raise CurateError(f"{'--replicas' if opts.replicas > 1 else '--ray-address'} needs --executor ray")
    if opts.executor == "ray":
        check_backend(opts.backend)


def _resolve_model(opts: GenerateOptions) -> tuple[str, str]:
    """(what the engine loads, the name written into rows and the config)."""
    if opts.model:
        return opts.model, opts.model
    from curate.embedded import EMBEDDED_NAME, gguf_path

    gguf_path()  # fails early, with the fix, when the wheel is missing
    return "", EMBEDDED_NAME


def variables(row: dict, examples: list | None) -> dict:
    """What a template sees: every input column at the top level, plus `examples`."""
    extra = json.loads(row["extra"]) if row.get("extra") else {}
    out = {**extra, **{k: v for k, v in row.items() if k != "extra"}}
    if examples is not None:
        out["examples"] = examples
    return out


def _render_all(template: Template, problems, examples, path: str) -> None:
    compiled = template.compile()
    for i, row in enumerate(problems.iter_rows(named=True)):
        try:
            template.render(variables(row, examples), compiled)
        except CurateError as e:
            raise CurateError(f"{path}: row {i + 1} (problem_id {row['problem_id']}): {e}") from None


def run(p: Plan, progress: bool = True) -> dict:
    """Generate what is missing from the run dir. Returns the summary.

    The engine is loaded and shown the first prompt before the run dir is touched, so
    a model that cannot take the template (e.g. no chat template) writes nothing. What
    the engine prints goes to the run's log (unless `verbose`)."""
    with EngineOutput(p.opts.verbose) as engine_output:
        return _run(p, progress, engine_output)


def _run(p: Plan, progress: bool, engine_output: EngineOutput) -> dict:
    started, t0 = now(), time.time()  # the session's clock includes loading the engine
    pending = _pending(p)
    backend = _start_backend(p, pending) if pending else None
    try:
        with p.store.session() as manifest:
            handler = _attach_log(p.store.log_path)
            engine_output.log_path = p.store.log_path
            try:
                writer = ShardWriter(p, p.store, manifest, started, t0)
                try:
                    _generate(p, backend, pending, writer, manifest, progress, engine_output.terminal)
                finally:
                    summary = writer.finish()  # what is finished is saved, whatever happened
            except KeyboardInterrupt:
                log.warning("interrupted; re-run the same command to resume")
                raise
            except BaseException:
                log.exception("generation failed")
                raise
            finally:
                logging.getLogger("curate").removeHandler(handler)
                handler.close()
    finally:
        if backend is not None:
            backend.close()
    return {**summary, "status": manifest["status"]}


def _pending(p: Plan) -> list[tuple[dict, list[int]]]:
    """(problem row, sample indices still to generate), read from the shards already there."""
    if p.opts.until_correct:
        return adaptive.pending(p)
    done = p.store.done()
    n = p.sampling.n
    pending = [(row, [i for i in range(n) if i not in done.get(row["problem_id"], ())])
               for row in p.problems.iter_rows(named=True)]
    return [(row, todo) for row, todo in pending if todo]


def _start_backend(p: Plan, pending: list):
    """Load the engine and show it the first prompt (a model that cannot take it fails here)."""
    backend = _load_backend(p)
    try:
        backend.validate(next(_requests(p, pending[:1])).prompt)
    except BaseException:
        backend.close()
        raise
    return backend


def _generate(p: Plan, backend, pending: list, writer: ShardWriter, manifest: dict, progress: bool,
              terminal=None) -> None:
    """Stream the pending requests through the backend into shards."""
    total = p.problems.height * p.sampling.n
    already = writer.counts["samples_done"]
    log.info("curate %s generate: %s", __version__, " ".join(p.opts.command))
    log.info("%d problems x %d samples; %d already done; %d requests to run",
             p.problems.height, p.sampling.n, already, len(pending))
    if backend is None:
        return
    manifest["engine"] = backend.describe()
    writer.generation_started = time.time()
    with Progress("generating", total, "samples", already, progress, tokens=True, file=terminal) as bar:
        if p.opts.until_correct:
            adaptive.run_rounds(p, backend, writer, bar, _requests)
        else:
            for req, samples in backend.run(_requests(p, pending)):
                writer.add(req, samples)
                bar.advance(len(samples), sum(s.completion_tokens or 0 for s in samples))
    writer.flush(force=True)


def _requests(p: Plan, pending: list) -> Iterator[Request]:
    compiled = p.template.compile()
    for row, todo in pending:
        prompt = p.template.render(variables(row, p.examples), compiled)
        seed = derive_seed(p.sampling.seed, row["problem_id"])
        # engines seed the j-th sample of a request with seed + j: sample i always draws with seed + i
        # (todo is contiguous: a plain run's whole range, or an adaptive round)
        yield Request(key=row["problem_id"], prompt=prompt, sample_indices=todo,
                      seed=None if seed is None else seed + todo[0])


def _load_backend(p: Plan):
    from curate.backends import make_backend

    model = p.model
    if not model and p.opts.backend in ("vllm", "transformers"):
        from curate.embedded import embedded_model_dir

        model = str(embedded_model_dir(log=log.info))
    options = p.opts.engine.to_dict()
    log.info("loading %s on %s", p.model_label, p.opts.backend)  # goes to the run's log once it is open
    if p.opts.executor == "ray":
        from curate.backends.ray import RayBackend

        return RayBackend(model, p.sampling, {**options, "backend": p.opts.backend, "replicas": p.opts.replicas,
                                              "ray_address": p.opts.ray_address})
    return make_backend(p.opts.backend, model, p.sampling, options)


class ShardWriter:
    """Buffers finished rows; writes a shard and the manifest every N rows or T seconds."""

    def __init__(self, p: Plan, store: RunStore, manifest: dict, started: str, t0: float):
        self.p, self.store, self.manifest = p, store, manifest
        self.rows: list[dict] = []
        self.last_flush = time.time()
        self.session_samples = 0
        self.session_tokens = 0
        self.sampling_json = json.dumps(p.sampling.to_dict(), sort_keys=True)
        self.problem_rows = {r["problem_id"]: r for r in p.problems.iter_rows(named=True)}
        self.generation_started: float | None = None
        self.started, self.t0 = started, t0  # the session's start, before the engine loads
        self.counts = counts(store, p)  # read from the shards once, then kept up to date per shard

    def add(self, req: Request, samples: list[Sample], verdicts: list[dict] | None = None) -> None:
        """Buffer a finished request's rows; `verdicts`: per sample, round/correct/verdict (adaptive runs)."""
        row = self.problem_rows[req.key]
        _, prefill = split_prefill(req.prompt)
        prompt = req.prompt if isinstance(req.prompt, str) else json.dumps(req.prompt, ensure_ascii=False)
        for i, s in enumerate(samples):
            parsed = parse_completion(s.text, prefill)
            self.rows.append({
                "problem_id": req.key,
                "sample_index": s.index,
                "sample_id": sample_id(req.key, self.p.model_label, s.index),
                "source": row["source"],
                "domain": row["domain"],
                "problem": row["problem"],
                "reference_answer": row["reference_answer"],
                "tests": row["tests"],
                "template": self.p.template.name,
                "template_sha": self.p.template.sha,
                "prompt": prompt,
                "model": self.p.model_label,
                "backend": self.p.opts.backend,
                "sampling": self.sampling_json,
                "completion": s.text,
                "reasoning": parsed.reasoning,
                "answer": parsed.answer,
                "final_answer": parsed.final_answer,
                "finish_reason": s.finish_reason,
                "prompt_tokens": s.prompt_tokens,
                "completion_tokens": s.completion_tokens,
                "error": s.error,
                "extra": row["extra"],
                "think_tokens": s.think_tokens,
                "forced_waits": s.forced_waits,
                "forced_stop": s.forced_stop,
            } | (verdicts[i] if verdicts else {"round": 1}))
            self.session_samples += 1
            self.session_tokens += s.completion_tokens or 0
        self.flush()

    def flush(self, force: bool = False) -> None:
        due = len(self.rows) >= self.p.opts.shard_rows or time.time() - self.last_flush >= self.p.opts.flush_seconds
        if not self.rows or not (force or due):
            return
        path = self.store.write_shard(pa.Table.from_pylist(self.rows, schema=GENERATION_SCHEMA))
        log.info("wrote %s (%d rows)", path.name, len(self.rows))
        c = self.counts
        c["samples_done"] += len(self.rows)
        c["shards"] += 1
        for row in self.rows:
            c["finish_reasons"][row["finish_reason"]] = c["finish_reasons"].get(row["finish_reason"], 0) + 1
            c["prompt_tokens"] += row["prompt_tokens"] or 0
            c["completion_tokens"] += row["completion_tokens"] or 0
            if self.p.sampling.budgeted:
                c["forced_waits"] += row["forced_waits"] or 0
                c["forced_stops"] += bool(row["forced_stop"])
        self.rows = []
        self.last_flush = time.time()
        self.store.update(counts=c)

    def finish(self) -> dict:
        """Close the session: flush, record timings (load vs generation) and counts."""
        self.flush(force=True)
        started, t0 = self.started, self.t0
        end = time.time()
        gen_start = self.generation_started or end
        gen_seconds = end - gen_start
        session = {"started": started, "ended": now(), "seconds": round(end - t0, 2),
                   "load_seconds": round(gen_start - t0, 2), "generate_seconds": round(gen_seconds, 2),
                   "samples": self.session_samples, "completion_tokens": self.session_tokens,
                   "output_tokens_per_s": round(self.session_tokens / gen_seconds, 2) if gen_seconds > 0 else None}
        self.manifest.setdefault("timings", {}).setdefault("sessions", []).append(session)
        self.store.update(counts=self.counts)
        log.info("session: %s", session)
        return {"session": session, "counts": self.counts, "out": str(self.store.root)}


def counts(store: RunStore, p: Plan) -> dict:
    """Counts over the shards on disk (read once per session)."""
    table = store.read_columns(["finish_reason", "prompt_tokens", "completion_tokens"])
    reasons: dict[str, int] = {}
    if table is not None:
        for r in table.column("finish_reason").to_pylist():
            reasons[r] = reasons.get(r, 0) + 1
    forced = {}
    if p.sampling.budgeted:  # thinking budgets: how often "Wait" was inserted / the end of thinking forced
        t = store.read_columns(["forced_waits", "forced_stop"])
        forced = {"forced_waits": int(pc.sum(t.column("forced_waits")).as_py() or 0) if t is not None else 0,
                  "forced_stops": int(pc.sum(pc.cast(t.column("forced_stop"), "int32")).as_py() or 0)
                  if t is not None else 0}
    done = table.num_rows if table is not None else 0
    expected = p.problems.height * p.sampling.n
    if p.opts.until_correct and not adaptive.pending(p):  # finished: as many as its rounds took
        expected = done
    return forced | {
        "problems": p.problems.height,
        "samples_expected": expected,
        "samples_done": done,
        "shards": len(store.shards()),
        "finish_reasons": reasons,
        "prompt_tokens": int(pc.sum(table.column("prompt_tokens")).as_py() or 0) if table is not None else 0,
        "completion_tokens": int(pc.sum(table.column("completion_tokens")).as_py() or 0) if table is not None else 0,
    }


def _attach_log(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("curate")
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    return handler
