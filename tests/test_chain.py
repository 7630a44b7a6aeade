"""The chain runner (`curate filter`) with the format and length filters: funnel,
rejected rows with reasons, resume, and errors."""

import json
from pathlib import Path

import polars as pl
import pytest

from curate import chain
from curate.errors import CurateError
from curate.filters.base import Decision, Filter
from curate.filters.format import Format, check_format
from curate.filters.length import Length, is_truncated
from helpers import curate

GOOD = "<think>\nadd them\n</think>\n\nThe answer is \\boxed{4}."


def make_run(tmp_path, shards=3, per_shard=4):
    """A generate-shaped run: some good, some truncated, some malformed completions."""
    run = tmp_path / "run"
    run.mkdir()
    kinds = [GOOD, "<think>\nstill going", "no tags at all", GOOD.replace("add them", "")]
    reasons = ["stop", "length", "stop", "stop"]
    i = 0
    for s in range(shards):
        rows = []
        for j in range(per_shard):
            kind = (s * per_shard + j) % 4
            rows.append({"sample_id": f"p{i}:m:0", "problem": f"problem {i}", "completion": kinds[kind],
                         "finish_reason": reasons[kind], "completion_tokens": 10 + i})
            i += 1
        pl.DataFrame(rows).write_parquet(run / f"part-{s:05d}.parquet")
    return run


def test_check_format_cases():
    def reason(completion, style="think"):
        verdict = check_format(completion, style)
        assert verdict.keep is (verdict.reason is None)
        return verdict.reason

    assert reason(GOOD) is None
    assert reason("reasoning only\n</think>\nanswer") is None  # template prefilled <think>
    assert reason("<think>a</think>") == "no answer after </think>"
    assert reason("<think> </think> x") == "empty reasoning"
    assert reason("<think>a</think><think>b</think> x") == "2 think blocks"
    assert reason("intro <think>a</think> x") == "text before <think>"
    assert reason("plain") == "no <think> block"
    assert reason("<think> r </think> <answer> 5 </answer>", "r1_zero") is None
    assert reason("<think> r </think> 5", "r1_zero") == "not <think>…</think> <answer>…</answer>"
    assert reason("<think> r </think> <answer> </answer>", "r1_zero") == "empty answer"


def test_length_filter_reasons():
    df = pl.DataFrame({"completion": [GOOD, "<think>x", GOOD, GOOD],
                       "finish_reason": ["stop", "stop", "length", "stop"],
                       "completion_tokens": [5, 6, 7, 500]})
    d = Length(max_tokens=100)(df)
    assert d.keep.to_list() == [True, False, False, False]
    assert d.reason.to_list() == [None, "truncated", "truncated", "longer than 100 tokens"]
    assert is_truncated("<think> a </think> b", "stop") is False


def test_filter_run_funnel_rejected_and_kept(tmp_path):
    run = make_run(tmp_path)
    out = tmp_path / "filtered"
    r = curate("filter", "--input", run, "--out", out, "--filters", "format,length", "--no-progress")
    assert "funnel" in r.stdout
    kept = pl.read_parquet(sorted((out / "kept").glob("part-*.parquet")))
    rejected = pl.concat([pl.read_parquet(p) for p in sorted((out / "rejected").glob("*.parquet"))],
                         how="diagonal_relaxed")
    assert kept.height + rejected.height == 12
    assert kept["completion"].unique().to_list() == [GOOD]
    assert set(rejected.columns) >= {"sample_id", "problem", "completion", "finish_reason", "rejected_by", "reason"}
    by = {(f, r): n for f, r, n in rejected.group_by("rejected_by", "reason").len().iter_rows()}
    assert by == {("format", "no </think>"): 3, ("format", "no <think> block"): 3, ("format", "empty reasoning"): 3}
    manifest = json.loads((out / "manifest.json").read_text())
    funnel = manifest["funnel"]
    assert funnel["rows_in"] == 12 and funnel["kept"] == 3 and funnel["rejected"] == 9
    assert [s["filter"] for s in funnel["steps"]] == ["format", "length"]
    assert funnel["steps"][0]["by_reason"] == {"no </think>": 3, "no <think> block": 3, "empty reasoning": 3}
    assert manifest["status"] == "complete" and not (out / ".stages").exists()


def test_length_first_then_format(tmp_path):
    run = make_run(tmp_path)
    out = tmp_path / "filtered"
    chain_file = tmp_path / "chain.yaml"
    chain_file.write_text("filters:\n  - length: {max_tokens: 15}\n  - format\n")
    curate("filter", "--input", run, "--out", out, "--chain", chain_file, "--no-progress")
    funnel = json.loads((out / "manifest.json").read_text())["funnel"]
    assert funnel["steps"][0]["by_reason"] == {"truncated": 3, "longer than 15 tokens": 5}
    assert funnel["steps"][1]["rows_in"] == 4 and funnel["kept"] + funnel["rejected"] == 12


def test_resume_after_an_interrupt_gives_the_same_output(tmp_path, monkeypatch):
    run = make_run(tmp_path, shards=4)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    chain.run(chain.plan(chain.FilterOptions(input=str(run), out=str(whole), filters="format,length", progress=False)))

    calls = {"n": 0}
    real = Format.__call__

    def interrupt_on_third_shard(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(Format, "__call__", interrupt_on_third_shard)
    with pytest.raises(KeyboardInterrupt):  # one worker: the tasks run in this process, where the patch is
        chain.run(chain.plan(chain.FilterOptions(input=str(run), out=str(cut), filters="format,length",
                                                 progress=False, workers=1)))
    assert json.loads((cut / "manifest.json").read_text())["status"] == "interrupted"
    assert len(list((cut / ".stages" / "00-format").glob("part-*.parquet"))) == 2
    monkeypatch.setattr(Format, "__call__", real)
    chain.run(chain.plan(chain.FilterOptions(input=str(run), out=str(cut), filters="format,length", progress=False)))

    for sub in ("kept", "rejected"):
        a = sorted(p.name for p in (whole / sub).glob("*.parquet"))
        assert a == sorted(p.name for p in (cut / sub).glob("*.parquet"))
        for name in a:
            assert pl.read_parquet(whole / sub / name).equals(pl.read_parquet(cut / sub / name))


def test_a_run_killed_while_publishing_resumes_at_the_shard_it_stopped_in(tmp_path, monkeypatch):
    run = make_run(tmp_path, shards=4)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    chain.run(chain.plan(chain.FilterOptions(input=str(run), out=str(whole), filters="format,length", progress=False)))

    real = chain.Publish.__call__
    published = []

    def interrupt_on_third_shard(self, item):
        if len(published) == 2:
            raise KeyboardInterrupt
        published.append(item[0])
        return real(self, item)

    monkeypatch.setattr(chain.Publish, "__call__", interrupt_on_third_shard)
    with pytest.raises(KeyboardInterrupt):  # one worker: the tasks run in this process, where the patch is
        chain.run(chain.plan(chain.FilterOptions(input=str(run), out=str(cut), filters="format,length",
                                                 progress=False, workers=1)))
    kept = sorted(p.name for p in (cut / "kept").glob("*.parquet"))
    assert len(published) == 2 and kept == sorted(f"part-{i:05d}.parquet" for i in published)
    monkeypatch.setattr(chain.Publish, "__call__", lambda self, item: published.append(item[0]) or real(self, item))
    chain.run(chain.plan(chain.FilterOptions(input=str(run), out=str(cut), filters="format,length", progress=False,
                                             workers=1)))
    assert sorted(published) == [0, 1, 2, 3]  # the two published shards were not written again
    for sub in ("kept", "rejected"):
        names = sorted(p.name for p in (whole / sub).glob("*.parquet"))
        assert names == sorted(p.name for p in (cut / sub).glob("*.parquet"))
        for name in names:
            assert pl.read_parquet(whole / sub / name).equals(pl.read_parquet(cut / sub / name))


@pytest.mark.parametrize("args, message", [
    (["--filters", "format,nope"], "unknown filter 'nope'; available: format, length"),
    (["--filters", "format", "--map", "completion=output"],
     "--map completion=output: the input has no column 'output'"),
    (["--filters", "format", "--ray-address", "127.0.0.1:1"], "--ray-address needs --executor ray"),
    (["--filters", "format", "--executor", "ray", "--ray-address", "127.0.0.1:1"],
     "--ray-address 127.0.0.1:1: could not connect"),
])
def test_bad_chains_are_one_line_errors(tmp_path, args, message):
    run = make_run(tmp_path)
    out = tmp_path / "out"
    r = curate("filter", "--input", run, "--out", out, *args, check=False)
    assert r.returncode == 2 and r.stderr.startswith(f"error: {message}") and r.stderr.count("\n") == 1
    assert not out.exists()


def test_bad_parameter_and_missing_column(tmp_path):
    run = make_run(tmp_path)
    chain_file = tmp_path / "chain.yaml"
    chain_file.write_text("filters:\n  - length: {max_tokens: -3}\n")
    with pytest.raises(CurateError, match="chain.yaml:2:14: filter length: parameter max_tokens must be >= 1, got -3"):
        chain.plan(chain.FilterOptions(input=str(run), out=str(tmp_path / "o"), chain=str(chain_file)))
    chain_file.write_text("filters:\n  - format: {colour: red}\n")
    with pytest.raises(CurateError, match="chain.yaml:2:14: filter format: unknown parameter 'colour'"):
        chain.plan(chain.FilterOptions(input=str(run), out=str(tmp_path / "o"), chain=str(chain_file)))
    chain_file.write_text("filters: [format\n")
    with pytest.raises(CurateError, match=r"chain.yaml:\d+:\d+: bad YAML"):
        chain.plan(chain.FilterOptions(input=str(run), out=str(tmp_path / "o"), chain=str(chain_file)))
    pl.read_parquet(run / "part-00000.parquet").drop("finish_reason").write_parquet(tmp_path / "x.parquet")
    chain.plan(chain.FilterOptions(input=str(tmp_path / "x.parquet"), out=str(tmp_path / "o"), filters="length"))
    pl.read_parquet(run / "part-00000.parquet").drop("completion").write_parquet(tmp_path / "y.parquet")
    with pytest.raises(CurateError, match="has no completion: looked for completion, conversations, messages"):
        chain.plan(chain.FilterOptions(input=str(tmp_path / "y.parquet"), out=str(tmp_path / "o"), filters="length"))
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("entry, spot, message", [
    ("  - math: {timeout: abc}", "3:12", "filter math: parameter timeout must be float, got 'abc'"),
    ("  - language: {no_such_param: 1}", "3:16", "filter language: unknown parameter 'no_such_param' (it has lang,"),
    ("  - readability: {max_ratio: -3}", "3:19", "filter readability: unknown parameter 'max_ratio'"),
    ("  - readability:\n      max_paragraph_chars: 100\n      max_top_2gram_fraction: -3", "5:7",
     "filter readability: parameter max_top_2gram_fraction must be >= 0.0, got -3.0"),
    ("  - language: {lang: xx}", "3:16", "filter language: parameter lang: 'xx' is not a language lid.176 knows"),
    ("  - dedup: {num_perm: 64, bands: 5}", "3:27", "filter dedup: parameter bands must divide num_perm (64)"),
    ("  - math: {mode: rules, judge: {backend: openai}}", "3:25", "filter math: parameter judge needs mode: cascade"),
    ("  - math:\n      mode: cascade\n      judge: {backend: nope}", "5:7",
     "filter math: judge: backend must be vllm, openai or transformers, not 'nope'"),
    ("  - math: {mode: cascade}", "3:5", "filter math: mode cascade needs a judge"),
    ("  - nope", "3:5", "unknown filter 'nope'; available: "),
    ("  - length: 3", "3:13", "filter 2 (length): parameters must be a mapping"),
    ("  - [length]", "3:5", "filter 2 must be a name or a one-key mapping"),
])
def test_a_bad_filter_in_a_chain_file_names_its_line_and_column(tmp_path, entry, spot, message):
    """`curate filter --chain FILE`: a bad filter or parameter is one line, FILE:LINE:COL (of
    the parameter when one is at fault, else of the filter), exit 2, nothing written."""
    run = make_run(tmp_path, shards=1)
    chain_file = tmp_path / "chain.yaml"
    chain_file.write_text(f"filters:\n  - format\n{entry}\n  - length\n")
    out = tmp_path / "out"
    r = curate("filter", "--input", run, "--out", out, "--chain", chain_file, check=False)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"error: {chain_file}:{spot}: {message}") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not out.exists()


@pytest.mark.parametrize("value, dtype", [({}, "Struct({})"), (123456789012345678901234567890, "Int128"),
                                          ([{"a": {}}], "List(Struct({'a': Struct({})}))")])
def test_a_column_parquet_cannot_store_is_one_line_naming_the_file_and_column(tmp_path, value, dtype):
    """JSON's `{}` and integers beyond 64 bits (curate.store.check_storable, shared with `curate
    mix`): exit 2, one line naming the file and column, nothing written."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"completion": GOOD, "meta": value}) + "\n" for _ in range(2)))
    out = tmp_path / "out"
    r = curate("filter", "--input", rows, "--out", out, "--filters", "format", "--no-progress", check=False)
    assert r.returncode == 2, r.stderr
    assert r.stderr == (f"error: {rows}: column 'meta': Parquet cannot store its type, {dtype} (an object "
                        "without keys, {}, or an integer beyond 64 bits)\n")
    assert not out.exists()


def test_a_hub_style_file_with_other_column_names(tmp_path):
    """A dataset file from elsewhere: no sample_id (made from file and row), columns mapped."""
    path = tmp_path / "train-00000-of-00001.jsonl"
    rows = [{"problem": f"q{i}", "generation": GOOD if i % 2 else "<think>cut", "finish": "stop"} for i in range(6)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out"
    curate("filter", "--input", path, "--out", out, "--filters", "format,length", "--map", "completion=generation",
           "--map", "finish_reason=finish", "--no-progress")
    kept = pl.read_parquet(out / "kept" / "part-00000.parquet")
    assert kept["sample_id"].to_list() == ["train-00000-of-00001:1", "train-00000-of-00001:3", "train-00000-of-00001:5"]
    assert kept["completion"].to_list() == [GOOD] * 3


def test_tasks_in_worker_processes_give_the_rows_of_filtering_in_memory(tmp_path, monkeypatch):
    """Shards are split into tasks across worker processes; each stage keeps a mask (row
    positions and scores), not the rows. kept/ and rejected/ hold exactly what filtering
    the whole table in memory, filter after filter, gives: every column, the scores so
    far, row for row; and the same with one worker."""
    from traces import planted_rows

    rows, _ = planted_rows()
    many = pl.DataFrame([dict(r, sample_id=f"{r['sample_id']}#{i}") for i in range(50) for r in rows])  # 700 rows
    run = tmp_path / "run"
    run.mkdir()
    for k, (a, b) in enumerate([(0, 420), (420, 430), (430, 700)]):  # 2 tasks, 1 task, 2 tasks at 2 workers
        many.slice(a, b - a).write_parquet(run / f"part-{k:05d}.parquet")
    stage_columns = {}
    publish = chain.publish

    def look_at_the_stages(p, shards, executor):
        for stage in sorted((Path(p.opts.out) / ".stages").iterdir()):
            stage_columns[stage.name] = pl.read_parquet_schema(stage / "part-00000.parquet").names()
        return publish(p, shards, executor)

    monkeypatch.setattr(chain, "publish", look_at_the_stages)
    names = "length,language,readability"
    outs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        chain.run(chain.plan(chain.FilterOptions(input=str(run), out=str(out), filters=names, progress=False,
                                                 workers=workers)))
        outs[workers] = out
    filters = chain.build_filters([(n, {}) for n in names.split(",")])
    scores = [["_pos"]]
    for f in filters:
        scores.append(scores[-1] + list(f.scores))
    assert stage_columns == {f"{k:02d}-{f.name}": scores[k + 1] + ["_keep", "_reason"] for k, f in enumerate(filters)}
    assert "language_ratio" in stage_columns["02-readability"]

    # the reference: the whole table in memory, one filter after the other
    df, expected = many, {}
    for k, f in enumerate(filters):
        d = f(df)
        scored = df.with_columns(list(d.scores.values()))
        expected[f"{k:02d}-{f.name}"] = scored.filter(~d.keep).with_columns(
            pl.lit(f.name).alias("rejected_by"), d.reason.filter(~d.keep).alias("reason"))
        df = scored.filter(d.keep)
    for out in outs.values():
        assert pl.read_parquet(out / "kept" / "*.parquet").equals(df)
        for stage, rejected in expected.items():
            got = pl.concat([pl.read_parquet(f) for f in sorted((out / "rejected").glob(f"{stage}-*.parquet"))])
            assert got.equals(rejected), stage
    funnel = json.loads((outs[2] / "manifest.json").read_text())["funnel"]
    assert funnel["steps"][1]["dropped"] == 100 and funnel["rows_in"] == 700  # the zh and ru rows, 50 each


class FirstOfProblem(Filter):
    """A stateful filter for the protocol's test: keeps the first row of each problem."""

    name = "first"
    needs = ("problem",)
    seen: list = []

    def index(self, batch):
        return batch.select("_row", "problem")

    def resolve(self, indexes, executor):
        FirstOfProblem.seen = indexes
        both = pl.concat(indexes)
        self._keep = set(both.group_by("problem").agg(pl.col("_row").min())["_row"].to_list())

    def __call__(self, batch):
        keep = batch["_row"].is_in(list(self._keep)).alias("keep")
        return Decision(keep, pl.Series("reason", [None if k else "not first" for k in keep], pl.String))


def test_a_stateful_filter_indexes_every_shard_resolves_then_marks(tmp_path):
    run = make_run(tmp_path, shards=3, per_shard=4)
    for f in sorted(run.glob("*.parquet")):  # problems repeat across shards
        df = pl.read_parquet(f)
        df.with_columns(pl.Series("problem", [f"problem {int(x.split(':')[0][1:]) % 8}" for x in df["sample_id"]]))\
            .write_parquet(f)
    p = chain.plan(chain.FilterOptions(input=str(run), out=str(tmp_path / "out"), filters="format", progress=False))
    p.filters.append(FirstOfProblem())
    chain.run(p)
    # one index per shard, in shard order; _row counts the rows that entered the stage (format kept 3 of 12)
    assert [x["_row"].to_list() for x in FirstOfProblem.seen] == [[0], [1], [2]]
    kept = pl.read_parquet(tmp_path / "out" / "kept" / "*.parquet")
    assert kept["sample_id"].to_list() == ["p0:m:0", "p4:m:0"] and "_row" not in kept.columns
    rejected = pl.read_parquet(tmp_path / "out" / "rejected" / "01-first-*.parquet")
    assert rejected["sample_id"].to_list() == ["p8:m:0"] and rejected["reason"].to_list() == ["not first"]


def test_a_large_file_is_cut_into_shards_and_any_input_reads_alike(tmp_path, monkeypatch):
    """A file of more than SHARD_ROWS rows is read in pieces (one output file each); a JSONL
    file is written once as Parquet curate rows; ids made from file and row run on."""
    rows = [{"problem": f"q{i}", "completion": GOOD if i % 3 else "plain", "finish_reason": "stop"} for i in range(12)]
    pl.DataFrame(rows).write_parquet(tmp_path / "data.parquet")
    pl.DataFrame(rows).write_ndjson(tmp_path / "data.jsonl")
    monkeypatch.setattr(chain, "SHARD_ROWS", 5)
    kept = {}
    for name in ("data.parquet", "data.jsonl"):
        out = tmp_path / f"out-{name}"
        chain.run(chain.plan(chain.FilterOptions(input=str(tmp_path / name), out=str(out), filters="format",
                                                 progress=False)))
        assert sorted(p.name for p in (out / "kept").iterdir()) == [f"part-0000{i}.parquet" for i in range(3)]
        kept[name] = pl.read_parquet(out / "kept" / "*.parquet")
    assert kept["data.parquet"]["sample_id"].to_list() == [f"data:{i}" for i in range(12) if i % 3]
    assert kept["data.parquet"].select(sorted(kept["data.parquet"].columns)).equals(
        kept["data.jsonl"].select(sorted(kept["data.parquet"].columns)))


def test_a_hub_dataset_name_offline_is_one_line(tmp_path):
    out = tmp_path / "out"
    r = curate("filter", "--input", "no-such-owner/no-such-traces", "--out", out, "--filters", "format", check=False)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("error: no-such-owner/no-such-traces: could not load the Hub dataset")
    assert not out.exists()


def test_a_parquet_file_written_by_datasets(tmp_path):
    """Hub datasets are Parquet written by `datasets` (with its schema metadata): such a
    file is read as any other. (Loading by Hub name is only testable offline as an error.)"""
    import datasets

    ds = datasets.Dataset.from_dict({"completion": [GOOD, "plain"], "finish_reason": ["stop", "stop"]})
    ds.to_parquet(str(tmp_path / "train.parquet"))
    out = tmp_path / "out"
    chain.run(chain.plan(chain.FilterOptions(input=str(tmp_path / "train.parquet"), out=str(out), filters="format",
                                             progress=False)))
    assert pl.read_parquet(out / "kept" / "part-00000.parquet")["completion"].to_list() == [GOOD]


@pytest.mark.parametrize("chain_text, message", [
    ("filters:\n  - decontam: {benchmarks: [aime24]}\n",
     "filter decontam: benchmark AIME 2024: HuggingFaceH4/aime_2024: could not load"),
    ("filters:\n  - dedup: {against: [nowhere.parquet]}\n",
     "filter dedup: against nowhere.parquet: no such file or folder"),
])
def test_unreachable_data_for_a_filter_is_refused_before_anything_is_written(tmp_path, chain_text, message):
    run = make_run(tmp_path)
    chain_file = tmp_path / "chain.yaml"
    chain_file.write_text(chain_text)
    out = tmp_path / "out"
    r = curate("filter", "--input", run, "--out", out, "--chain", chain_file, check=False)
    assert r.returncode == 2 and r.stderr.startswith(f"error: {chain_file}:2:5: {message}"), r.stderr
    assert r.stderr.count("\n") == 1
    assert not out.exists()


def test_every_table_kind_filters_alike(tmp_path):
    """A folder of Parquet, one JSONL file and a datasets folder of the same rows give the same kept rows."""
    import datasets

    run = make_run(tmp_path)
    rows = pl.read_parquet(sorted(run.glob("*.parquet")))
    rows.write_ndjson(tmp_path / "rows.jsonl")
    datasets.Dataset(rows.to_arrow()).save_to_disk(str(tmp_path / "ds"))
    kept = {}
    for name in ("run", "rows.jsonl", "ds"):
        opts = chain.FilterOptions(input=str(tmp_path / name), out=str(tmp_path / f"out-{name}"),
                                   filters="format,length", progress=False)
        manifest = chain.run(chain.plan(opts))
        assert manifest["status"] == "complete" and manifest["counts"]["rows_in"] == 12
        kept[name] = pl.read_parquet(tmp_path / f"out-{name}" / "kept" / "*.parquet").sort("sample_id")
    assert kept["run"].height == 3 and kept["run"].equals(kept["rows.jsonl"]) and kept["run"].equals(kept["ds"])


def test_a_ray_task_fits_filters_that_start_their_own_processes_to_its_cpus():
    """A Ray task is given 1 CPU: math's pool and code's sandboxes keep to it unless told a number."""
    from curate.executor import LocalExecutor, RayExecutor
    from curate.filters.code import Code
    from curate.filters.math import Math

    assert RayExecutor.task_cpus == 1 and LocalExecutor.task_cpus is None
    fitted, told = Math(), Math(workers=3)
    for f in (fitted, told):
        f.fit(1)
    assert fitted.pool.workers == 1 and told.pool.workers == 3
    assert fitted.params()["workers"] == Math().params()["workers"]  # the run's config is unchanged
    code, code_told = Code(), Code(workers=4)
    code.fit(1), code_told.fit(1)
    assert code._sandboxes == 1 and code_told._sandboxes == 4


def test_the_costliest_shards_go_first():
    """Shards by their rows' bytes (the rows that enter the stage, of each), ties in shard order."""
    shards = [chain.Shard("a", 0, 100, nbytes=1000), chain.Shard("b", 0, 100, nbytes=5000),
              chain.Shard("c", 0, 100, nbytes=1000), chain.Shard("d", 0, 10, nbytes=3000)]
    assert chain.heaviest_first(range(4), shards) == [1, 3, 0, 2]
    assert chain.heaviest_first([0, 1, 2, 3], shards, counts=[100, 10, 50, 10]) == [3, 0, 1, 2]  # 1000, 500, 500, 3000


def test_row_bytes_share_each_row_group_among_its_rows(tmp_path):
    import pyarrow.parquet as pq

    f = tmp_path / "x.parquet"
    pl.DataFrame({"t": ["a" * 10] * 100 + ["b" * 1000] * 100}).write_parquet(f, row_group_size=100)
    meta = pq.read_metadata(f)
    small, big = meta.row_group(0).total_byte_size, meta.row_group(1).total_byte_size
    assert big > 10 * small
    assert chain._row_bytes(meta, 0, 200) == small + big
    assert chain._row_bytes(meta, 50, 150) == int(small / 2 + big / 2)
