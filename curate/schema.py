"""The row that flows through generate → filter → select (docs/ARCHITECTURE.md, "The row").

Polars in memory, Parquet (zstd) on disk. `prompt`, `sampling`, `tests` and `extra`
hold JSON text so that every shard has the same flat, typed schema.
"""

from __future__ import annotations

import pyarrow as pa

GENERATION_SCHEMA = pa.schema(
    [
        ("problem_id", pa.string()),
        ("sample_index", pa.int32()),
        ("sample_id", pa.string()),
        ("source", pa.string()),
        ("domain", pa.string()),
        ("problem", pa.string()),
        ("reference_answer", pa.string()),
        ("tests", pa.string()),
        ("template", pa.string()),
        ("template_sha", pa.string()),
        ("prompt", pa.string()),
        ("model", pa.string()),
        ("backend", pa.string()),
        ("sampling", pa.string()),
        ("completion", pa.string()),
        ("reasoning", pa.string()),
        ("answer", pa.string()),
        ("final_answer", pa.string()),
        ("finish_reason", pa.string()),
        ("prompt_tokens", pa.int32()),
        ("completion_tokens", pa.int32()),
        ("error", pa.string()),
        ("extra", pa.string()),
        # generate --until-correct: the sample's round (1 in a plain run) and the verifier's
        # verdict (null when not verified); thinking budgets: think-block tokens and the
        # forced "Wait"s / forced end of thinking (null without a budget)
        ("round", pa.int32()),
        ("correct", pa.bool_()),
        ("verdict", pa.string()),
        ("think_tokens", pa.int32()),
        ("forced_waits", pa.int32()),
        ("forced_stop", pa.bool_()),
    ]
)

COLUMNS = GENERATION_SCHEMA.names


def sample_id(problem_id: str, model: str, index: int) -> str:
    """problem_id + model + sample index: unique per generation, readable."""
    return f"{problem_id}:{model_tag(model)}:{index}"


def model_tag(model: str) -> str:
    """The last path component of a model name or path ("Qwen/Qwen2.5-7B" -> "Qwen2.5-7B")."""
    return model.rstrip("/").rsplit("/", 1)[-1]


def with_problem_id(df):
    """Rows from elsewhere (a trace file put through `curate filter`) may have no
    `problem_id`: it is then the first 16 hex digits of sha256(problem text), so the
    samples of one problem group together in select, report and mix; without a
    `problem` column each row is its own problem (its `sample_id`)."""
    import hashlib

    import polars as pl

    if "problem_id" in df.columns:
        return df
    if "problem" not in df.columns:
        return df.with_columns(pl.col("sample_id").cast(pl.String).alias("problem_id"))
    ids = [hashlib.sha256(str(t).encode()).hexdigest()[:16] for t in df["problem"].to_list()]
    return df.with_columns(pl.Series("problem_id", ids, dtype=pl.String))
