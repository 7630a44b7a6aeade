"""`curate select`: rejection sampling over a filter run.

Reads a `curate filter` output folder and writes

    OUT/data/part-00000.parquet   the selected rows: every column of the kept rows, plus
                                  `run` (the generate run they came from); one file
    OUT/problems.parquet          one row per problem: problem_id, source, domain,
                                  generated, correct, kept, pass_rate, in_band, selected
    OUT/manifest.json             the policy, the counts, and the lineage: the filter
                                  folder (its chain and funnel) and the generate run
                                  (its model, template + sha, sampling)

A sample is *correct* when it passed the correctness filters (`math`, `code`): it was
kept, or it was rejected by a filter that runs after the last correctness filter in the
chain (a correct answer dropped later for, say, mixed language is still a correct
answer). A sample rejected before the correctness filter (truncated, malformed) counts
as generated and not correct. The pass rate of a problem is correct / generated, over
every sample the filter saw, not only the kept ones.

The policy picks, per problem, from the kept rows:

    all      every kept row (capped by --max-per-problem, chosen at random with --seed)
    one      one row: at random (--seed), the shortest or the longest completion
    best-k   the --max-per-problem rows with the highest --score column

`--pass-rate-band LOW HIGH` first keeps only the problems whose pass rate lies in
[LOW, HIGH] (the usual way to pick RL prompts that are neither solved nor hopeless).
The output is a pure function of the input and the options: re-running gives the same
files; a different config into the same --out is refused unless --overwrite.

Big inputs stream: the policy runs on light per-row keys read lazily (ids, the length:
generate's `completion_tokens` when present, else the completion's characters, the
--score column); the texts are read only by the final lazy scan that writes the
selected rows, so the unselected rows' texts are never held in memory.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from curate.errors import CurateError
from curate.options import opt
from curate.progress import Progress
from curate.schema import with_problem_id
from curate.store import Table, collect, load_manifest, open_run, open_table, read_manifest

CORRECTNESS_FILTERS = ("math", "code")
POLICIES = ("all", "one", "best-k")
ONE_BY = ("random", "shortest", "longest")
REJECTED_RE = re.compile(r"^(\d+)-(.+)-part-\d+\.parquet$")


@dataclass
class SelectOptions:
    input: str = opt(help="A `curate filter` output folder.", path="any")
    out: str = opt(help="Output folder: data/, problems.parquet, manifest.json.", path="dir")
    policy: str = opt("all", "Per problem, from the kept rows: all of them, one, or the k best by --score.",
                      choices=POLICIES)
    one_by: str = opt("random", "--policy one: which row (random is seeded).", choices=ONE_BY)
    max_per_problem: int | None = opt(None, "At most N rows per problem (the k of best-k).", min=1)
    score: str | None = opt(None, "--policy best-k: the column to rank by (e.g. language_ratio).")
    score_order: str = opt("desc", "Rank by --score descending or ascending.", choices=("desc", "asc"))
    pass_rate_band: tuple[float, float] | None = opt(
        None, "Keep only problems whose pass rate (correct / generated) lies in [LOW, HIGH].", metavar="LOW HIGH")
    seed: int = opt(0, "Seed of the random picks.")
    overwrite: bool = opt(False, "Replace an existing select run with a different config.")
    progress: bool = opt(True, "Show progress bars (--no-progress: none).", cli="--no-progress")
    command: list[str] = opt([], "The command line recorded in the manifest.", cli=False)


def check_options(o: SelectOptions) -> None:
    if o.policy not in POLICIES:
        raise CurateError(f"--policy {o.policy!r}: choose one of {', '.join(POLICIES)}")
    if o.one_by not in ONE_BY:
        raise CurateError(f"--one-by {o.one_by!r}: choose one of {', '.join(ONE_BY)}")
    if o.max_per_problem is not None and o.max_per_problem < 1:
        raise CurateError(f"--max-per-problem must be at least 1, got {o.max_per_problem}")
    if o.policy == "best-k" and (o.score is None or o.max_per_problem is None):
        raise CurateError("--policy best-k needs --score COLUMN and --max-per-problem K (the k)")
    if o.score_order not in ("desc", "asc"):
        raise CurateError(f"--score-order {o.score_order!r}: choose desc or asc")
    if o.pass_rate_band is not None:
        low, high = o.pass_rate_band
        if not (0.0 <= low <= high <= 1.0):
            raise CurateError(f"--pass-rate-band {low} {high}: expected 0 <= LOW <= HIGH <= 1")


def read_filter_dir(path: str) -> tuple[dict, Table, list[tuple[int, Path]]]:
    """The filter manifest, its kept rows, and (chain index, file) of each rejected shard."""
    root = Path(path)
    read_manifest(root, "filter", "give a `curate filter` output folder")
    kept = open_table(root)  # refuses a run that is not complete
    rejected = []
    for f in sorted((root / "rejected").glob("*.parquet")):
        m = REJECTED_RE.match(f.name)
        if m:
            rejected.append((int(m.group(1)), f))
    return kept.manifest, kept, rejected


def correctness_index(chain: list[dict]) -> int | None:
    """Index of the last correctness filter in the chain, or None when there is none."""
    found = [k for k, step in enumerate(chain) if step.get("filter") in CORRECTNESS_FILTERS]
    return found[-1] if found else None


def generate_lineage(filter_manifest: dict, filter_dir: str) -> dict:
    """What the card needs about the generate run the filter read (when it was one)."""
    path = (filter_manifest.get("inputs") or {}).get("path")
    info = {"path": path}
    if not path:
        return info
    p = Path(path)
    if not p.is_absolute() and not p.exists():
        p = Path(filter_dir).parent / path
    info["path"] = str(p.resolve()) if p.exists() else path
    try:
        m = load_manifest(p) if p.is_dir() else None
    except CurateError:  # unreadable: the lineage goes without it
        return info
    if m:
        if m.get("stage") == "generate":
            cfg = m.get("config", {})
            info.update(stage="generate", model=cfg.get("model"), backend=cfg.get("backend"),
                        template=(m.get("inputs") or {}).get("template") or cfg.get("template"),
                        sampling=cfg.get("sampling"), problems=(m.get("inputs") or {}).get("problems"),
                        counts=m.get("counts"), command=m.get("command"))
    return info


def read_rejected(rejected: list[tuple[int, Path]]) -> pl.DataFrame:
    """problem_id (and source, domain when present) and the chain index of every rejected row."""
    frames = []
    for k, f in rejected:
        try:
            names = pq.read_schema(f).names
            wanted = ("problem_id",) if "problem_id" in names else ("problem", "sample_id")
            cols = [c for c in (*wanted, "source", "domain") if c in names]
            frame = with_problem_id(pl.read_parquet(f, columns=cols))
            frames.append(frame.select(pl.exclude("problem", "sample_id")).with_columns(pl.lit(k).alias("step")))
        except Exception as e:  # noqa: BLE001 - pyarrow/polars raise many kinds
            raise CurateError(f"{f}: unreadable ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame(
        schema={"problem_id": pl.String, "step": pl.Int32})


def problem_table(kept: pl.DataFrame, rejected: pl.DataFrame, correct_after: int | None) -> pl.DataFrame:
    """Per problem: generated, correct, kept, pass_rate (null without a correctness filter)."""
    is_correct = (pl.col("step") > correct_after) if correct_after is not None else pl.lit(False)
    rows = pl.concat([kept.select("problem_id", pl.lit(True).alias("correct"), pl.lit(True).alias("is_kept")),
                      rejected.select("problem_id", is_correct.alias("correct"), pl.lit(False).alias("is_kept"))],
                     how="vertical_relaxed")
    table = rows.group_by("problem_id").agg(
        pl.len().alias("generated"), pl.col("correct").sum().alias("correct"), pl.col("is_kept").sum().alias("kept"))
    if correct_after is None:  # no correctness filter: correctness unknown
        return table.with_columns(pl.lit(None, pl.UInt32).alias("correct"),
                                  pl.lit(None, pl.Float64).alias("pass_rate")).sort("problem_id")
    return table.with_columns((pl.col("correct") / pl.col("generated")).alias("pass_rate")).sort("problem_id")


ROW = "_select_row"  # a kept row's position in the kept table (the keys' link to the texts)


def problem_id_expr(columns: list[str]) -> pl.Expr:
    """schema.with_problem_id as a lazy expression: the row's problem_id, else the first
    16 hex digits of sha256(problem), else its sample_id."""
    if "problem_id" in columns:
        return pl.col("problem_id")
    if "problem" not in columns:
        return pl.col("sample_id").cast(pl.String).alias("problem_id")
    return pl.col("problem").map_batches(
        lambda s: pl.Series([hashlib.sha256(str(t).encode()).hexdigest()[:16] for t in s.to_list()], dtype=pl.String),
        return_dtype=pl.String, is_elementwise=True).alias("problem_id")


def kept_keys(kept: Table, score: str | None) -> pl.DataFrame:
    """One light row per kept row: its position, problem_id, sample_id, `_length`
    (completion_tokens, else the completion's characters), source, domain, the score."""
    columns = kept.columns()
    if score and score not in columns:
        raise CurateError(f"--score {score!r}: the kept rows have no such column (columns: {', '.join(columns)})")
    length = pl.col("completion_tokens") if "completion_tokens" in columns else pl.col("completion").str.len_chars()
    wanted = [problem_id_expr(columns), pl.col("sample_id"), length.alias("_length"),
              *[pl.col(c) for c in ("source", "domain") if c in columns],
              *([pl.col(score)] if score and score not in ("source", "domain", "sample_id", "problem_id") else [])]
    keys, offset = [], 0
    for _, part in kept.parts():  # file by file, streaming: the completions' lengths without the completions
        with pl.Config(engine_affinity="streaming"):
            keys.append(collect(part.with_row_index(ROW, offset=offset).select(ROW, *wanted), kept.source))
        offset += keys[-1].height
    return pl.concat(keys, how="diagonal_relaxed")


def pick(kept: pl.DataFrame, o: SelectOptions) -> pl.DataFrame:
    """Apply the policy per problem to the kept rows' keys; rows come back sorted by problem, sample."""
    if kept.height == 0:
        return kept
    # a seeded random key per row, stable whatever order the shards came in
    keyed = kept.with_columns(pl.col("sample_id").cast(pl.String).hash(seed=o.seed).alias("_r"))
    length = pl.col("_length")
    if o.policy == "one":
        order, desc = {"random": (["_r"], [False]), "shortest": ([length, "_r"], [False, False]),
                       "longest": ([length, "_r"], [True, False])}[o.one_by]
        n = 1
    elif o.policy == "best-k":
        order, desc, n = [pl.col(o.score), "_r"], [o.score_order == "desc", False], o.max_per_problem
    else:
        order, desc, n = ["_r"], [False], o.max_per_problem
    ranked = keyed.sort(order, descending=desc, nulls_last=True)
    if n is not None:
        ranked = ranked.filter(pl.int_range(pl.len()).over("problem_id") < n)
    return ranked.drop("_r").sort(["problem_id", "sample_id"])


def run(o: SelectOptions) -> dict:
    """Select from a filter run into OUT (built whole in a temporary folder); returns the manifest."""
    check_options(o)
    fmanifest, kept_table, rejected = read_filter_dir(o.input)
    chain = (fmanifest.get("config") or {}).get("chain") or []
    correct_after = correctness_index(chain)
    if o.pass_rate_band is not None and correct_after is None:
        raise CurateError(f"{o.input}: --pass-rate-band needs pass rates, but the chain has no correctness filter "
                          f"({', '.join(CORRECTNESS_FILTERS)}); chain: {', '.join(s['filter'] for s in chain)}")
    config = {"input": str(Path(o.input).resolve()), "policy": o.policy,
              "one_by": o.one_by if o.policy == "one" else None, "max_per_problem": o.max_per_problem,
              "score": o.score, "score_order": o.score_order if o.score else None,
              "pass_rate_band": list(o.pass_rate_band) if o.pass_rate_band else None, "seed": o.seed,
              "filter_updated": fmanifest.get("updated")}
    lineage = generate_lineage(fmanifest, o.input)
    inputs = {"filter": {"path": str(Path(o.input).resolve()), "chain": chain,
                         "funnel": fmanifest.get("funnel"), "command": fmanifest.get("command")},
              "generate": lineage}
    out = open_run(o.out, "select", config, overwrite=o.overwrite, command=o.command, inputs=inputs)
    with out.session(replace=True) as manifest:
        with Progress("select", len(kept_table.files) + len(rejected), "files", enabled=o.progress) as bar:
            kept = kept_keys(kept_table, o.score)
            bar.advance(len(kept_table.files))
            dropped = read_rejected(rejected)
            bar.advance(len(rejected))
        problems = problem_table(kept, dropped, correct_after)
        selected, problems = _select(o, kept, dropped, problems)
        manifest.update(
            correctness={"filters": [s["filter"] for s in chain if s.get("filter") in CORRECTNESS_FILTERS],
                         "rule": "kept, or rejected by a filter after the last correctness filter"},
            counts=_counts(problems, kept, selected, correct_after))
        (out.dir / "data").mkdir()
        write_selected(kept_table, selected[ROW], lineage.get("path") or str(o.input),
                       out.dir / "data" / "part-00000.parquet")
        problems.write_parquet(out.dir / "problems.parquet", compression="zstd")
    return manifest


def write_selected(kept: Table, rows: pl.Series, run_label: str, path: Path) -> None:
    """The kept rows at positions `rows`, in that order, with every column and `run`."""
    columns = kept.columns()
    extra = [] if "problem_id" in columns else [problem_id_expr(columns)]
    picked = read_positions(kept, rows, index=ROW, extra=extra)  # in table order: ROW ascending
    # into the order of `rows` by one gather (a join and a sort would hold two more copies of the texts)
    take = np.searchsorted(picked[ROW].to_numpy(), rows.cast(pl.UInt32).to_numpy())
    picked = picked.drop(ROW)[take]
    picked.with_columns(pl.lit(run_label).alias("run")).write_parquet(path, compression="zstd")


def read_positions(table: Table, positions, columns: list[str] | None = None, index: str = "_row",
                   extra: tuple[pl.Expr, ...] | list[pl.Expr] = ()) -> pl.DataFrame:
    """The rows of `table` at `positions` (row numbers over its files in order), in table
    order, with their position in column `index` (and the `extra` columns): each file is
    streamed through a filter on the positions and the matches are copied out of its
    buffers, so the other rows' texts are never held (select's output, mix's picked rows)."""
    wanted = pl.col(index).is_in(pl.Series(positions, dtype=pl.UInt32).implode())
    picked, offset = [], 0
    for _, part in table.parts():
        if columns is not None:
            names = part.collect_schema().names()
            part = part.select([c for c in columns if c in names])
        frame = part.with_row_index(index, offset=offset).with_columns(*extra).filter(wanted)
        with pl.Config(engine_affinity="streaming"):
            rows = collect(frame, table.source)
        # a copy: filtered strings still point into the whole file's buffers, which would stay held
        picked.append(pl.from_arrow(rows.to_arrow(compat_level=pl.CompatLevel.oldest())))
        offset += collect(part.select(pl.len()), table.source).item()
    return pl.concat(picked, how="diagonal_relaxed", rechunk=False)


def _select(o: SelectOptions, kept: pl.DataFrame, dropped: pl.DataFrame,
            problems: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The pass-rate band, then the policy per problem; (selected rows, the per-problem table)."""
    if o.pass_rate_band is not None:
        low, high = o.pass_rate_band
        in_band = pl.col("pass_rate").is_between(low, high, closed="both")
    else:
        in_band = pl.lit(True)
    problems = problems.with_columns(in_band.alias("in_band"))
    band_ids = problems.filter("in_band")["problem_id"]
    selected = pick(kept.filter(pl.col("problem_id").is_in(band_ids.implode())), o)
    per = selected.group_by("problem_id").len().rename({"len": "selected"})
    problems = problems.join(per, on="problem_id", how="left").with_columns(pl.col("selected").fill_null(0))
    cols = [c for c in ("source", "domain") if c in kept.columns or c in dropped.columns]
    if cols:  # problems with no kept row take their labels from a rejected one
        labels = pl.concat([f.select("problem_id", *[c for c in cols if c in f.columns]) for f in (kept, dropped)],
                           how="diagonal_relaxed").unique("problem_id", keep="first", maintain_order=True)
        problems = problems.join(labels, on="problem_id", how="left")
    problems = problems.select(*[c for c in ("problem_id", "source", "domain") if c in problems.columns],
                               "generated", "correct", "kept", "pass_rate", "in_band", "selected").sort("problem_id")
    return selected, problems


def _counts(problems: pl.DataFrame, kept: pl.DataFrame, selected: pl.DataFrame, correct_after: int | None) -> dict:
    return {"problems": problems.height, "problems_in_band": int(problems["in_band"].sum()),
            "problems_selected": int((problems["selected"] > 0).sum()), "generated": int(problems["generated"].sum()),
            "correct": int(problems["correct"].sum()) if correct_after is not None else None,
            "kept": kept.height, "selected": selected.height}


def pass_rate_histogram(problems: pl.DataFrame, bins: int = 10) -> list[dict]:
    """Problems per pass-rate bin [i/bins, (i+1)/bins) (the last bin includes 1.0)."""
    rates = problems["pass_rate"].drop_nulls().to_list()
    counts = [0] * bins
    for r in rates:
        counts[min(int(r * bins), bins - 1)] += 1
    return [{"low": i / bins, "high": (i + 1) / bins, "problems": c} for i, c in enumerate(counts)]

