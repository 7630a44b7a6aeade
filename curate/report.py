"""`curate report RUN_DIR`: one self-contained HTML page about a run.

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
    run_dir: str = opt(help="A generate, filter, select or mix output folder.", argument=True, path="any")
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
    """Build the page and write it atomically (RUN_DIR/report.html by default)."""
    if not Path(run_dir).is_dir():
        raise CurateError(f"{run_dir}: no such folder (give a curate filter, generate, select or mix output)")
    path = Path(out) if out else Path(run_dir) / "report.html"
    if path.is_dir():
        raise CurateError(f"--out {path}: is a folder; give a file name")
    if not path.parent.is_dir():
        raise CurateError(f"--out {path}: folder {path.parent} does not exist")
    html = build_page(run_dir, samples, language_sample, seed, progress)
    write_text_atomic(path, html)
    return path
