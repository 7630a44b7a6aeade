"""The whole default chain on a generate-shaped run of realistic long traces, each
with one planted defect: every defect is dropped by the right filter for the right
reason, the clean traces are kept, and rows in = kept + rejected."""

import json

import polars as pl

from helpers import curate
from traces import planted_run


def test_default_chain_on_a_generate_run(tmp_path):
    run = tmp_path / "generate"
    expect = planted_run(run)
    out = tmp_path / "filter"
    r = curate("filter", "--input", run, "--out", out, "--no-progress", timeout=300)
    assert "funnel" in r.stdout

    kept = pl.read_parquet(sorted((out / "kept").glob("part-*.parquet")))
    rejected = pl.concat([pl.read_parquet(p) for p in sorted((out / "rejected").glob("*.parquet"))],
                         how="diagonal_relaxed")
    assert kept.height + rejected.height == len(expect)
    assert sorted(kept["sample_id"].to_list()) == sorted(s for s, e in expect.items() if e is None)
    got = {row["sample_id"]: (row["rejected_by"], row["reason"]) for row in rejected.iter_rows(named=True)}
    for sample_id, expected in expect.items():
        if expected is None:
            continue
        assert sample_id in got, f"{sample_id} should be dropped by {expected}"
        by, reason = got[sample_id]
        assert by == expected[0] and expected[1] in reason, (sample_id, by, reason, expected)

    manifest = json.loads((out / "manifest.json").read_text())
    funnel = manifest["funnel"]
    assert manifest["filters_info"]["math"]["verifier"].startswith("math-verify ")
    assert manifest["filters_info"]["language"]["model"].startswith("lid.176.ftz")
    assert [s["filter"] for s in funnel["steps"]] == ["length", "format", "math", "language", "readability", "dedup",
                                                      "decontam"]
    assert funnel["rows_in"] == len(expect) and funnel["kept"] + funnel["rejected"] == len(expect)
    assert {"math_status", "language_ratio"} <= set(kept.columns)
