"""`curate report RUN_DIR`: one self-contained HTML page about a run, or across the
stages of a recipe's folder.

Sections: the funnel (rows in, dropped per filter and reason, kept), length histograms
(kept vs each filter's rejects), pass rates per problem, language shares, and a sample
browser that shows, per problem, kept and rejected traces side by side with the reason
each was dropped.

RUN_DIR is a `curate filter` output (kept/, rejected/, manifest.json with the chain
and the funnel), a `curate generate` run (no funnel, no verdicts), or a `curate
select` / `curate mix` output (data/*.parquet). The page has no external URL: CSS and
JS are inline, plots are base64 PNGs, and the browser's rows are JSON inside a
`<script type="application/json">` with `<`, `>` and `&` escaped, rendered with
`textContent` only, so model text (untrusted) is shown, never run.

Big runs: only light columns (ids, lengths, verdicts, reasons) are read for every row;
text is read for the browser's sample (--samples problems, seeded) and, when the run
has no language scores, for --language-sample rows run through language ID. The page
says what was sampled. Pass rates use curate.select's definition (correct = passed
the chain's last correctness filter), so the report and `curate select` agree.

A recipe's folder (`curate run --out OUT`: no manifest of its own, stage run
directories below it, found by their manifests' `stage`, linked by the paths their
manifests say they read) gets one page that follows the data: problems → samples
(tokens, finish reasons, rounds) → each filter (drops by reason, examples) → selection
(pass-rate histogram) → mixture (sources, counts, token lengths) → training (loss and
reward curves from the trainers' logs) → eval (pass@1 with error bars). Python:
`write_report(OUT) -> Path` (OUT/report.html), or `curate.report(run_dir=OUT)`.
"""

from __future__ import annotations

import base64
import io
import json
import os
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from curate.errors import CurateError
from curate.options import opt
from curate.progress import Progress
from curate.schema import with_problem_id
from curate.store import load_manifest, now, package_versions, require_complete, write_text_atomic

MAX_TRACE_CHARS = 20_000  # per trace in the browser
TRACES_PER_SIDE = 4  # kept / rejected traces per problem in the browser
PROBLEM_TABLE_ROWS = 500
LIGHT = ("problem_id", "sample_id", "finish_reason", "math_status", "code_status", "language_ratio",
         "language_foreign", "rejected_by", "reason", "source", "domain")
TEXT = ("problem", "completion", "messages", "reference_answer", "final_answer", "sample_id")


# -- reading a run ----------------------------------------------------------------------


@dataclass
class ReportOptions:
    run_dir: str = opt(help="A generate, filter, select or mix output folder, or a recipe's folder of stage run "
                            "directories (one page across the stages).", argument=True, path="any")
    out: str | None = opt(None, "The HTML file. Default: RUN_DIR/report.html.", path="file")
    samples: int = opt(200, "Problems in the sample browser (a seeded random sample when the run has more).", min=1)
    language_sample: int = opt(2000, "Rows to run language ID on when the run has no language scores.", min=1)
    seed: int = opt(0, "Seed of the samples.")
    progress: bool = opt(True, "Show progress bars (--no-progress: none).", cli="--no-progress")


@dataclass
class Run:
    path: Path
    kind: str  # filter | generate | select | mix
    manifest: dict
    files: list[Path]  # every table file, in the order of rows' `file` index
    rows: pl.DataFrame  # one light row per sample: file, row, problem_id, status, step, rejected_by, reason, length, …
    length_unit: str


def load_run(path: str | os.PathLike) -> Run:
    root = Path(path)
    if not root.is_dir():
        raise CurateError(f"{path}: no such folder (give a curate filter, generate, select or mix output)")
    manifest = load_manifest(root) or {}
    stage = manifest.get("stage")
    if stage not in (None, "filter", "generate", "select", "mix"):
        raise CurateError(f"{path}: holds a `{stage}` run; curate report reads filter, generate, select or mix outputs")
    if stage == "filter" or (stage is None and (root / "kept").is_dir()):
        require_complete(path, manifest)
        kept = sorted((root / "kept").glob("part-*.parquet"))
        rejected = sorted((root / "rejected").glob("*-part-*.parquet"))
        if not kept and not rejected:
            raise CurateError(f"{path}: no kept/ or rejected/ shards")
        groups = [(f, "kept", None, None) for f in kept]
        for f in rejected:
            step, _, rest = f.name.partition("-")
            groups.append((f, "rejected", rest.rsplit("-part-", 1)[0], int(step) if step.isdigit() else None))
        kind = "filter"
    elif stage == "generate" or (stage is None and sorted(root.glob("part-*.parquet"))):
        files = sorted(root.glob("part-*.parquet"))
        if not files:
            raise CurateError(f"{path}: a generate run with no part-*.parquet shards yet")
        groups, kind = [(f, "generated", None, None) for f in files], "generate"
    elif stage in ("select", "mix") or (root / "data").is_dir():
        files = sorted((root / "data").rglob("*.parquet"))
        if not files:
            raise CurateError(f"{path}: no data/*.parquet shards")
        groups, kind = [(f, "kept", None, None) for f in files], stage or "mix"
    else:
        raise CurateError(f"{path}: not a curate run (no manifest.json stage, kept/, part-*.parquet or data/)")
    frames, units = [], set()
    for i, (f, status, rejected_by, step) in enumerate(groups):
        frame, unit = _light(f, i, status, rejected_by, step)
        frames.append(frame)
        units.add(unit)
    rows = pl.concat(frames, how="diagonal_relaxed")
    unit = "tokens" if units == {"tokens"} else "characters"
    if unit == "characters":  # some files have no token counts: characters for all, comparable
        rows = rows.with_columns(pl.col("length_chars").alias("length"))
    return Run(root, kind, manifest, [g[0] for g in groups], rows, unit)


def _light(path: Path, index: int, status: str, rejected_by: str | None, step: int | None) -> tuple[pl.DataFrame, str]:
    """The light columns of one file (text columns only as lengths)."""
    try:
        names = pq.read_schema(path).names
    except Exception as e:  # noqa: BLE001 - pyarrow raises several kinds
        raise CurateError(f"{path}: not a readable Parquet file "
                          f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    scan = pl.scan_parquet(path)
    cols = [pl.col(c) for c in LIGHT if c in names]
    if "problem_id" not in names and "problem" in names:  # rows from a file: ids from the problem text
        cols.append(pl.col("problem"))
    if "completion" in names:
        chars = pl.col("completion").str.len_chars()
    elif "messages" in names:
        chars = pl.col("messages").list.last().struct.field("content").str.len_chars()
    else:
        chars = pl.lit(None, pl.UInt32)
    if "completion_tokens" in names:
        length, unit = pl.col("completion_tokens"), "tokens"
    elif "num_tokens" in names:
        length, unit = pl.col("num_tokens"), "tokens"
    else:
        length, unit = chars, "characters"
    df = scan.select(*cols, length.cast(pl.Int64).alias("length"), chars.cast(pl.Int64).alias("length_chars")).collect()
    df = df.with_row_index("row").with_columns(pl.lit(index).alias("file"), pl.lit(status).alias("status"),
                                               pl.lit(step, pl.Int64).alias("step"))
    if "problem_id" not in df.columns and "problem" in df.columns:
        df = with_problem_id(df).drop("problem")
    elif "problem_id" not in df.columns:
        df = df.with_columns((pl.lit(f"{path.stem}:") + pl.col("row").cast(pl.String)).alias("problem_id"))
    if rejected_by and "rejected_by" not in df.columns:
        df = df.with_columns(pl.lit(rejected_by).alias("rejected_by"))
    return df, unit


def read_texts(run: Run, keys: list[tuple[int, int]]) -> dict[tuple[int, int], dict]:
    """problem / completion / answers for (file, row) keys, one file read at a time."""
    by_file: dict[int, list[int]] = {}
    for f, r in keys:
        by_file.setdefault(f, []).append(r)
    out = {}
    for f, rows in by_file.items():
        path = run.files[f]
        names = pq.read_schema(path).names
        table = pl.read_parquet(path, columns=[c for c in TEXT if c in names]).with_row_index("row")
        for d in table.filter(pl.col("row").is_in(rows)).iter_rows(named=True):
            out[(f, d["row"])] = _text_fields(d)
    return out


def _text_fields(d: dict) -> dict:
    messages = d.get("messages") or []
    user = next((m.get("content") for m in messages if m.get("role") == "user"), None)
    assistant = next((m.get("content") for m in reversed(messages) if m.get("role") == "assistant"), None)
    return {"problem": d.get("problem") or user or "", "completion": d.get("completion") or assistant or "",
            "reference_answer": d.get("reference_answer"), "final_answer": d.get("final_answer"),
            "sample_id": d.get("sample_id")}


# -- the sections ------------------------------------------------------------------------


def funnel_section(run: Run) -> dict:
    """Rows in, dropped per filter (top reasons), kept; from a filter run's manifest, else
    the counts the run itself gives."""
    funnel = run.manifest.get("funnel")
    if run.kind == "filter" and funnel:
        rows_in = max(funnel["rows_in"], 1)
        steps = [{**s, "kept_pct": 100 * s["kept"] / rows_in, "dropped_pct": 100 * s["dropped"] / rows_in,
                  "reasons": list(s.get("by_reason", {}).items())[:6],
                  "more_reasons": max(len(s.get("by_reason", {})) - 6, 0)} for s in funnel["steps"]]
        return {"rows_in": funnel["rows_in"], "kept": funnel["kept"], "rejected": funnel["rejected"], "steps": steps}
    counts = run.rows.group_by("status").len().sort("status").rows()
    return {"rows_in": run.rows.height, "steps": [], "counts": counts,
            "note": {"generate": "a generate run has no funnel: run `curate filter` on it",
                     "filter": "the manifest has no funnel"}.get(run.kind,
                                                                 f"a {run.kind} output: rows after selection")}


def length_section(run: Run) -> dict:
    df = run.rows.filter(pl.col("length").is_not_null())
    if df.height == 0:
        return {"image": None, "stats": []}
    groups = [("kept" if run.kind == "filter" else run.rows["status"][0], df.filter(pl.col("status") != "rejected"))]
    if "rejected_by" in df.columns:
        rejected = df.filter(pl.col("status") == "rejected")
        order = rejected.group_by("rejected_by").len().sort("len", descending=True)["rejected_by"].to_list()
        groups += [(f"rejected by {name}", rejected.filter(pl.col("rejected_by") == name)) for name in order]
    groups = [(label, g) for label, g in groups if g.height]
    stats = [{"label": label, "rows": g.height, "mean": g["length"].mean(), "p50": g["length"].median(),
              "p90": g["length"].quantile(0.9), "max": g["length"].max()} for label, g in groups]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=90)
    values = [g["length"].to_numpy() for _, g in groups]
    ax.hist(values, bins=40, stacked=True, label=[label for label, _ in groups])
    ax.set_xlabel(f"completion length ({run.length_unit})")
    ax.set_ylabel("rows")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return {"image": _png(fig), "stats": stats, "unit": run.length_unit}


def pass_rate_section(run: Run) -> dict:
    """Per problem: generated, correct, pass rate; with curate.select's definitions."""
    problems = None
    if run.kind == "filter":
        from curate.select import correctness_index, problem_table

        chain = (run.manifest.get("config") or {}).get("chain") or []
        correct_after = correctness_index(chain)
        if correct_after is None:
            return {"note": "the chain has no correctness filter (math or code): no pass rates"}
        kept = run.rows.filter(pl.col("status") == "kept").select("problem_id")
        rejected = run.rows.filter(pl.col("status") == "rejected").select("problem_id", "step")
        problems = problem_table(kept, rejected, correct_after)
        source = f"correct = passed the `{chain[correct_after]['filter']}` filter (kept, or dropped by a later filter)"
    elif run.kind == "generate" and (run.manifest.get("adaptive") or {}).get("problems"):
        adaptive = run.manifest["adaptive"]
        problems = pl.DataFrame(adaptive["problems"]).rename({"samples": "generated"})
        source = (f"generated = samples spent by adaptive sampling (--until-correct {adaptive['until_correct']}, "
                  f"--max-samples {adaptive['max_samples']}: {adaptive['solved']} problems reached it), "
                  "correct = the verifier's verdicts at generation")
    elif run.kind == "select" and (run.path / "problems.parquet").is_file():
        problems = pl.read_parquet(run.path / "problems.parquet")
        source = "from the select run's problems.parquet"
    else:
        return {"note": f"a {run.kind} run has no correctness verdicts: run `curate filter` with math or code"}
    rated = problems.filter(pl.col("pass_rate").is_not_null())
    if rated.height == 0:
        return {"note": "no problem has a pass rate (the chain had no math or code filter)"}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 2.8), dpi=90)
    ax.hist(rated["pass_rate"].to_numpy(), bins=[i / 10 for i in range(11)], edgecolor="white")
    ax.set_xlabel("pass rate (correct / generated)")
    ax.set_ylabel("problems")
    ax.grid(alpha=0.3)
    table = rated.sort(["pass_rate", "problem_id"]).head(PROBLEM_TABLE_ROWS)
    return {
        "image": _png(fig), "source": source, "problems": rated.height,
        "correct": int(rated["correct"].sum()), "generated": int(rated["generated"].sum()),
        "mean": rated["pass_rate"].mean(), "solved": rated.filter(pl.col("correct") > 0).height,
        "all": rated.filter(pl.col("pass_rate") == 1.0).height,
        "rows": [{"problem_id": r["problem_id"], "generated": r["generated"], "correct": r["correct"],
                  "pass_rate": r["pass_rate"]} for r in table.iter_rows(named=True)],
        "truncated": rated.height > PROBLEM_TABLE_ROWS,
    }


def language_section(run: Run, sample: int, seed: int, progress: bool) -> dict:
    """Shares of languages: from the language filter's scores when the run has them, else
    the dominant language (most letters) of a seeded sample, by filters.language."""
    df = run.rows
    if "language_ratio" in df.columns and df["language_ratio"].drop_nulls().len():
        seen = df.filter(pl.col("language_ratio").is_not_null())
        target = _chain_param(run, "language", "lang", "en")
        labels = seen["language_foreign"].fill_null(f"{target}").to_list() if "language_foreign" in seen.columns \
            else [target] * seen.height
        shares = _shares(labels)
        return {"source": f"the language filter's scores on the {seen.height:,} rows it saw: the language of the first "
                          f"confidently foreign sentence, else the target language ({target})",
                "shares": shares, "mean_ratio": seen["language_ratio"].mean(), "rows": seen.height}
    from curate.filters.language import classify_sentences

    rng = random.Random(seed)
    keys = [(f, r) for f, r in df.select("file", "row").iter_rows()]
    picked = sorted(rng.sample(keys, min(sample, len(keys))))
    texts = read_texts(run, picked)
    labels = []
    with Progress("language", len(picked), "rows", enabled=progress) as bar:
        for key in picked:
            letters: dict[str, int] = {}
            for s in classify_sentences(texts[key]["completion"] or ""):
                if s.lang:
                    letters[s.lang] = letters.get(s.lang, 0) + s.letters
            labels.append(max(letters, key=letters.get) if letters else "(too short to tell)")
            bar.advance(1)
    return {"source": f"language ID (fastText lid.176, per sentence, maths and code stripped) on "
                      f"{'all' if len(picked) == len(keys) else 'a seeded sample of'} "
                      f"{len(picked):,} of {len(keys):,} rows: "
                      "each row counted under the language with the most letters",
            "shares": _shares(labels), "rows": len(picked)}


def _shares(labels: list[str]) -> list[dict]:
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    total = max(len(labels), 1)
    return [{"lang": k, "rows": v, "pct": 100 * v / total} for k, v in sorted(counts.items(), key=lambda kv: -kv[1])]


def _chain_param(run: Run, name: str, key: str, default):
    for step in (run.manifest.get("config") or {}).get("chain") or []:
        if step.get("filter") == name:
            return (step.get("params") or {}).get(key, default)
    return default


def teacher(run: Run) -> str | None:
    """Model, template and sampling of the generate run behind this run, when known."""
    if run.kind == "generate":
        cfg = run.manifest.get("config") or {}
        info = {"model": cfg.get("model"), "backend": cfg.get("backend"), "template": cfg.get("template"),
                "sampling": cfg.get("sampling")}
    elif run.kind == "filter":
        from curate.select import generate_lineage

        info = generate_lineage(run.manifest, str(run.path))
    else:
        return None
    if not info.get("model"):
        return None
    template = info.get("template")
    name = template.get("name") if isinstance(template, dict) else template
    parts = [f"{info['model']} ({info.get('backend') or '?'})", f"template {name}" if name else None,
             f"sampling {json.dumps(info['sampling'])}" if info.get("sampling") else None]
    return " · ".join(p for p in parts if p)


def browser_section(run: Run, samples: int, seed: int) -> tuple[dict, list[dict]]:
    """A seeded sample of problems (those with both kept and rejected traces first), with
    up to TRACES_PER_SIDE traces on each side."""
    df = run.rows
    per = df.group_by("problem_id").agg((pl.col("status") != "rejected").sum().alias("n_kept"),
                                         (pl.col("status") == "rejected").sum().alias("n_rejected"))
    both = sorted(per.filter((pl.col("n_kept") > 0) & (pl.col("n_rejected") > 0))["problem_id"].to_list())
    rest = sorted(set(per["problem_id"].to_list()) - set(both))
    rng = random.Random(seed)
    rng.shuffle(both)
    rng.shuffle(rest)
    chosen = (both + rest)[:samples]
    order = {pid: i for i, pid in enumerate(chosen)}
    picked = df.filter(pl.col("problem_id").is_in(chosen))
    rows_by_problem: dict[str, dict] = {pid: {"kept": [], "rejected": []} for pid in chosen}
    for r in picked.sort(["file", "row"]).iter_rows(named=True):
        side = "rejected" if r["status"] == "rejected" else "kept"
        bucket = rows_by_problem[r["problem_id"]][side]
        if len(bucket) < TRACES_PER_SIDE:
            bucket.append(r)
    keys = [(r["file"], r["row"]) for p in rows_by_problem.values() for side in p.values() for r in side]
    texts = read_texts(run, keys)
    problems = []
    for pid in sorted(chosen, key=order.get):
        sides = rows_by_problem[pid]
        first = next(iter(sides["kept"] + sides["rejected"]))
        t0 = texts[(first["file"], first["row"])]
        problems.append({
            "id": pid, "problem": _cut(t0["problem"]), "reference": t0["reference_answer"],
            "kept": [_trace(r, texts[(r["file"], r["row"])]) for r in sides["kept"]],
            "rejected": [_trace(r, texts[(r["file"], r["row"])]) for r in sides["rejected"]],
        })
    total = per.height
    info = {"shown": len(chosen), "problems": total, "both": len(both), "per_side": TRACES_PER_SIDE,
            "max_chars": MAX_TRACE_CHARS, "sampled": total > len(chosen), "seed": seed,
            "filters": sorted({t["rejected_by"] for p in problems for t in p["rejected"] if t["rejected_by"]}),
            "status_label": "generated" if run.kind == "generate" else "kept"}
    return info, problems


def _trace(r: dict, t: dict) -> dict:
    return {"sample_id": t.get("sample_id") or r.get("sample_id") or f"{r['file']}:{r['row']}",
            "completion": _cut(t["completion"]), "final": t.get("final_answer"),
            "length": r.get("length"), "finish": r.get("finish_reason"),
            "rejected_by": r.get("rejected_by"), "reason": r.get("reason"),
            "verdict": r.get("math_status") or r.get("code_status")}


def _cut(text: str | None) -> str:
    text = text or ""
    if len(text) <= MAX_TRACE_CHARS:
        return text
    return text[:MAX_TRACE_CHARS] + f"\n… [{len(text) - MAX_TRACE_CHARS:,} more characters cut]"


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def script_json(value) -> str:
    """JSON safe inside <script type="application/json">: no `</script>`, no `<!--`."""
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# -- the page ----------------------------------------------------------------------------


def build_page(run_dir, samples: int = 200, language_sample: int = 2000, seed: int = 0, progress: bool = True) -> str:
    import jinja2

    run = load_run(run_dir)
    browser, problems = browser_section(run, samples, seed)
    context = {
        "run": {"path": str(run.path), "kind": run.kind, "rows": run.rows.height,
                "problems": run.rows["problem_id"].n_unique(),
                "created": run.manifest.get("created"), "command": " ".join(run.manifest.get("command") or []),
                "chain": [s.get("filter") for s in (run.manifest.get("config") or {}).get("chain") or []],
                "input": (run.manifest.get("inputs") or {}).get("path"), "teacher": teacher(run)},
        "funnel": funnel_section(run),
        "lengths": length_section(run),
        "pass_rates": pass_rate_section(run),
        "languages": language_section(run, language_sample, seed, progress),
        "browser": browser,
        "browser_json": script_json(problems),
        "generated": now(), "version": package_versions()["curate"],
    }
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda v, digits=0: "-" if v is None else f"{v:,.{digits}f}"
    template = env.from_string((resources.files("curate") / "report.html.jinja").read_text(encoding="utf-8"))
    return template.render(**context)


def write_report(run_dir, out=None, samples: int = 200, language_sample: int = 2000, seed: int = 0,
                 progress: bool = True) -> Path:
    """Build the page and write it atomically (RUN_DIR/report.html by default). RUN_DIR
    is one run, or a recipe's folder of stage run directories (the page across stages;
    the browser options do not apply to it)."""
    if not Path(run_dir).is_dir():
        raise CurateError(f"{run_dir}: no such folder (give a curate filter, generate, select or mix output)")
    path = Path(out) if out else Path(run_dir) / "report.html"
    if path.is_dir():
        raise CurateError(f"--out {path}: is a folder; give a file name")
    if not path.parent.is_dir():
        raise CurateError(f"--out {path}: folder {path.parent} does not exist")
    if is_recipe_folder(run_dir):
        html = build_pipeline_page(run_dir)
    else:
        html = build_page(run_dir, samples, language_sample, seed, progress)
    write_text_atomic(path, html)
    return path


# -- a recipe's folder: one page across stages -------------------------------------------

# stages in the order the data flows through them (a recipe's DAG is drawn in this order)
FLOW = ("generate", "filter", "select", "mix", "sft", "train-grpo", "eval")
EXAMPLES_PER_FILTER = 3
EXAMPLE_CHARS = 600


@dataclass
class Stage:
    name: str  # the folder's name under OUT
    path: Path
    kind: str  # the manifest's stage
    manifest: dict
    inputs: list[str]  # names of the stages (in OUT) this one read


def is_recipe_folder(path: str | os.PathLike) -> bool:
    """A folder without a manifest of its own whose sub-folders hold stage run directories."""
    root = Path(path)
    return root.is_dir() and not (root / "manifest.json").is_file() and bool(find_stages(root))


def find_stages(root: Path) -> list[Stage]:
    """The run directories directly under `root` (found by their manifest's stage), each
    with the stages it read (its manifest's inputs that resolve to another of them), in
    data-flow order."""
    found = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        manifest = load_manifest(d) if (d / "manifest.json").is_file() else None
        if manifest and manifest.get("stage") in FLOW:
            found[d.resolve()] = Stage(d.name, d, manifest["stage"], manifest, [])
    for stage in found.values():
        for ref in _input_paths(stage):
            target = Path(ref)
            target = (target if target.is_absolute() else stage.path.parent / target).resolve()
            while target not in found and target != target.parent and root.resolve() in target.parents:
                target = target.parent  # a path inside a stage's folder (e.g. a model under sft/)
            if target in found and found[target] is not stage and found[target].name not in stage.inputs:
                stage.inputs.append(found[target].name)
    return sorted(found.values(), key=lambda s: (FLOW.index(s.kind), s.name))


def _input_paths(stage: Stage) -> list[str]:
    """The paths a stage's manifest says it read."""
    m, cfg = stage.manifest, stage.manifest.get("config") or {}
    inputs = m.get("inputs") or {}
    refs = {
        "filter": [inputs.get("path")],
        "select": [(inputs.get("filter") or {}).get("path"), cfg.get("input")],
        "mix": [s.get("path") for s in cfg.get("sources") or []],
        "sft": [(m.get("data") or {}).get("path"), cfg.get("data"), cfg.get("student")],
        "train-grpo": [(m.get("data") or {}).get("path"), cfg.get("prompts"), cfg.get("policy")],
        "eval": [m.get("model"), cfg.get("model")],
    }.get(stage.kind, [])
    return [r for r in refs if isinstance(r, str) and r]


def problems_section(stage: Stage) -> dict:
    info = (stage.manifest.get("inputs") or {}).get("problems") or {}
    counts = stage.manifest.get("counts") or {}
    return {"stage": stage.name, "path": info.get("path"), "rows": counts.get("problems", info.get("rows")),
            "sha256": info.get("sha256"), "column": info.get("problem_column")}


def samples_section(stage: Stage) -> dict:
    """A generate run: samples, tokens (histogram of completion_tokens), finish reasons, rounds."""
    m = stage.manifest
    counts, cfg = m.get("counts") or {}, m.get("config") or {}
    files = sorted(stage.path.glob("part-*.parquet"))
    names = set(pq.read_schema(files[0]).names) if files else set()
    cols = [c for c in ("problem_id", "completion_tokens", "finish_reason", "round") if c in names]
    df = pl.concat([pl.read_parquet(f, columns=cols) for f in files]) if files else pl.DataFrame()
    out = {"stage": stage.name, "model": cfg.get("model"), "backend": cfg.get("backend"),
           "template": (cfg.get("template") or {}).get("name") if isinstance(cfg.get("template"), dict)
           else cfg.get("template"), "sampling": cfg.get("sampling"),
           "samples": counts.get("samples_done", df.height), "expected": counts.get("samples_expected"),
           "problems": counts.get("problems"), "completion_tokens": counts.get("completion_tokens"),
           "prompt_tokens": counts.get("prompt_tokens"),
           "finish_reasons": sorted((counts.get("finish_reasons") or {}).items(), key=lambda kv: -kv[1]),
           "image": None, "rounds": []}
    if "completion_tokens" in df.columns and df["completion_tokens"].drop_nulls().len():
        tokens = df["completion_tokens"].drop_nulls()
        out.update(mean_tokens=tokens.mean(), p50_tokens=tokens.median(), max_tokens=tokens.max(),
                   image=_histogram({"samples": tokens.to_numpy()}, "completion tokens", "samples"))
    if "round" in df.columns:
        per = df.group_by("round").agg(pl.len().alias("samples"), pl.col("problem_id").n_unique().alias("problems"))
        out["rounds"] = per.sort("round").rows(named=True)
    return out


def filter_section(stage: Stage) -> dict:
    """A filter run's funnel, drops by reason, and a few dropped rows per filter."""
    funnel = stage.manifest.get("funnel") or {}
    steps = []
    for k, s in enumerate(funnel.get("steps") or []):
        examples = []
        for f in sorted((stage.path / "rejected").glob(f"{k:02d}-*-part-*.parquet")):
            names = pq.read_schema(f).names
            cols = [c for c in ("sample_id", "reason", "completion") if c in names]
            for r in pl.read_parquet(f, columns=cols).head(EXAMPLES_PER_FILTER - len(examples)).iter_rows(named=True):
                text = r.get("completion") or ""
                examples.append({"sample_id": r.get("sample_id"), "reason": r.get("reason"),
                                 "text": text[:EXAMPLE_CHARS] + ("…" if len(text) > EXAMPLE_CHARS else "")})
            if len(examples) >= EXAMPLES_PER_FILTER:
                break
        steps.append({"filter": s.get("filter"), "rows_in": s.get("rows_in"), "dropped": s.get("dropped"),
                      "kept": s.get("kept"), "reasons": sorted((s.get("by_reason") or {}).items(),
                                                               key=lambda kv: -kv[1]), "examples": examples})
    return {"stage": stage.name, "rows_in": funnel.get("rows_in"), "kept": funnel.get("kept"),
            "rejected": funnel.get("rejected"), "steps": steps}


def selection_section(stage: Stage) -> dict:
    """A select run's policy, counts and pass-rate histogram (curate.select's bins)."""
    from curate.select import pass_rate_histogram

    m = stage.manifest
    problems = stage.path / "problems.parquet"
    bins = pass_rate_histogram(pl.read_parquet(problems, columns=["pass_rate"])) if problems.is_file() else []
    rated = sum(b["problems"] for b in bins)
    image = None
    if rated:
        rates = pl.read_parquet(problems, columns=["pass_rate"])["pass_rate"].drop_nulls().to_numpy()
        image = _histogram({"problems": rates}, "pass rate (correct / generated)", "problems",
                           bins=[i / 10 for i in range(11)])
    return {"stage": stage.name, "config": {k: v for k, v in (m.get("config") or {}).items()
                                            if k in ("policy", "one_by", "max_per_problem", "score", "pass_rate_band")
                                            and v is not None},
            "counts": m.get("counts") or {}, "bins": bins if rated else [], "image": image,
            "correctness": (m.get("correctness") or {}).get("filters") or []}


def mixture_section(stage: Stage) -> dict:
    """A mix run's sources (requested, delivered, domains), splits and num_tokens per source."""
    m = stage.manifest
    files = sorted((stage.path / "data").glob("*.parquet"))
    tokens = pl.concat([pl.read_parquet(f, columns=["source", "num_tokens"]) for f in files]) if files else None
    per_source = {}
    if tokens is not None and tokens.height:
        for (name,), g in tokens.group_by(["source"], maintain_order=True):
            per_source[name] = g["num_tokens"].to_numpy()
    sources = [{"name": s.get("name"), "kind": s.get("kind"), "requested": s.get("requested"),
                "available": s.get("available"), "delivered": s.get("delivered"), "upsampled": s.get("upsampled"),
                "domains": sorted((s.get("domains") or {}).items()),
                "mean_tokens": float(per_source[s["name"]].mean()) if s.get("name") in per_source else None}
               for s in m.get("sources") or []]
    return {"stage": stage.name, "sources": sources, "splits": sorted((m.get("splits") or {}).items()),
            "rows": (m.get("counts") or {}).get("rows"), "tokenizer": m.get("tokenizer"),
            "image": _histogram(per_source, "num_tokens per row", "rows") if per_source else None}


def training_log(stage: Stage) -> list[dict]:
    """The trainer's logged steps: GRPO's log.jsonl; for SFT the last checkpoint's
    trainer_state.json log_history, then the manifest's later entries."""
    log = stage.path / "log.jsonl"
    if log.is_file():
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    history = []
    states = sorted(stage.path.glob("checkpoint-*/trainer_state.json"),
                    key=lambda p: int(p.parent.name.rpartition("-")[2] or 0))
    if states:
        history = json.loads(states[-1].read_text()).get("log_history") or []
    last = max((h.get("step", 0) for h in history), default=-1)
    tail = (stage.manifest.get("train") or {}).get("log_history") or []
    return history + [h for h in tail if h.get("step", 0) > last or (h.get("step") == last and h not in history)]


def training_section(stage: Stage) -> dict:
    """Loss (and, for GRPO, reward) curves from the trainer's log."""
    log = [h for h in training_log(stage) if "step" in h]
    curves = {}
    for key in ("loss", "reward", "rewards/accuracy/mean", "rewards/format/mean", "kl", "mean_token_accuracy"):
        points = [(h["step"], h[key]) for h in log if isinstance(h.get(key), int | float)]
        if points:
            curves[key] = points
    image = None
    if curves:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        panels = [k for k in curves if k in ("loss", "reward")] or list(curves)[:1]
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 2.8), dpi=90, squeeze=False)
        for ax, key in zip(axes[0], panels):
            xs, ys = zip(*curves[key])
            ax.plot(xs, ys, marker="o", markersize=3)
            ax.set_xlabel("step")
            ax.set_ylabel(key)
            ax.grid(alpha=0.3)
        image = _png(fig)
    m = stage.manifest
    train = m.get("train") or {}
    summary = {"steps": (m.get("counts") or {}).get("steps", train.get("global_step")),
               "train_loss": train.get("train_loss"), "tokens": (m.get("counts") or {}).get("tokens"),
               "tokens_per_s": train.get("tokens_per_s")}
    return {"stage": stage.name, "kind": stage.kind, "image": image, "summary": summary,
            "last": {k: v[-1][1] for k, v in curves.items()}, "points": sum(len(v) for v in curves.values())}


def eval_section(stage: Stage) -> dict:
    """pass@1 ± its standard error (and maj@k) per benchmark, as bars with error bars."""
    m = stage.manifest
    results = m.get("results") or {}
    rows = [{"benchmark": name, "pass1": r.get("pass@1"), "stderr": r.get("pass@1_stderr"), "maj": r.get("maj@k"),
             "k": r.get("k"), "problems": r.get("problems"), "samples": r.get("samples")}
            for name, r in sorted(results.items())]
    image = None
    if rows:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(max(3.5, 1.4 * len(rows)), 2.8), dpi=90)
        ax.bar([r["benchmark"] for r in rows], [r["pass1"] or 0 for r in rows],
               yerr=[r["stderr"] or 0 for r in rows], capsize=6, color="#0969da")
        ax.set_ylim(0, 1)
        ax.set_ylabel("pass@1 ± s.e.")
        ax.grid(alpha=0.3, axis="y")
        image = _png(fig)
    return {"stage": stage.name, "model": m.get("model"), "k": m.get("k"), "rows": rows, "image": image}


def _histogram(groups: dict, xlabel: str, ylabel: str, bins=40) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 2.8), dpi=90)
    ax.hist(list(groups.values()), bins=bins, stacked=True, label=list(groups))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if len(groups) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


SECTIONS = {"generate": ("samples", samples_section), "filter": ("filters", filter_section),
            "select": ("selection", selection_section), "mix": ("mixture", mixture_section),
            "sft": ("training", training_section), "train-grpo": ("training", training_section),
            "eval": ("eval", eval_section)}


def build_pipeline_page(folder) -> str:
    """The page across the stages of a recipe's folder, in data-flow order."""
    import jinja2

    root = Path(folder)
    stages = find_stages(root)
    context = {name: [] for name, _ in SECTIONS.values()}
    context["problems"] = [problems_section(s) for s in stages if s.kind == "generate"]
    for s in stages:
        name, section = SECTIONS[s.kind]
        context[name].append(section(s))
    context["stages"] = [{"name": s.name, "kind": s.kind, "status": s.manifest.get("status"),
                          "inputs": s.inputs, "command": " ".join(s.manifest.get("command") or []),
                          "updated": s.manifest.get("updated")} for s in stages]
    context.update(folder=str(root), generated=now(), version=package_versions()["curate"])
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda v, digits=0: "-" if v is None else f"{v:,.{digits}f}"
    template = env.from_string((resources.files("curate") / "report_pipeline.html.jinja").read_text(encoding="utf-8"))
    return template.render(**context)
