import json
import os
import signal
import time

import polars as pl
import pyarrow as pa
import pytest

from curate.errors import CurateError
from curate.store import (
    RunStore,
    atomic_path,
    diff_config,
    is_hub_name,
    open_run,
    open_table,
    read_run,
    write_json,
    write_parquet_atomic,
)


def table(pids, idx):
    return pa.table({"problem_id": pids, "sample_index": pa.array(idx, pa.int32())})


def test_shards_are_numbered_and_done_is_read_from_them(tmp_path):
    store = RunStore(tmp_path / "run", "generate")
    assert store.check({"a": 1}, overwrite=False) is False
    store.open(overwrite=False)
    assert store.write_shard(table(["p1", "p1"], [0, 1])).name == "part-00000.parquet"
    assert store.write_shard(table(["p2"], [0])).name == "part-00001.parquet"
    assert store.done() == {"p1": {0, 1}, "p2": {0}}
    assert read_run(store.root)["problem_id"].to_list() == ["p1", "p1", "p2"]
    store.close()


def test_leftover_temp_files_are_removed_on_open(tmp_path):
    root = tmp_path / "run"
    root.mkdir()
    (root / ".tmp-123-part-00003.parquet").write_bytes(b"half a shard")
    store = RunStore(root, "generate")
    store.open(overwrite=False)
    assert not list(root.glob(".tmp-*")) and store.done() == {}
    store.close()


def test_same_config_resumes_and_different_config_is_refused(tmp_path):
    store = RunStore(tmp_path / "run", "generate")
    store.open(overwrite=False)
    store.write_manifest({"config": {"sampling": {"temperature": 0.6, "n": 4}, "model": "m"}})
    store.close()
    again = RunStore(tmp_path / "run", "generate")
    assert again.check({"sampling": {"temperature": 0.6, "n": 4}, "model": "m"}, overwrite=False) is True
    with pytest.raises(CurateError) as e:
        again.check({"sampling": {"temperature": 0.8, "n": 4}, "model": "m"}, overwrite=False)
    assert "different config (sampling.temperature: 0.6 → 0.8)" in str(e.value) and "--overwrite" in str(e.value)
    assert again.check({"sampling": {"temperature": 0.8}}, overwrite=True) is False


def test_overwrite_clears_shards_manifest_and_log(tmp_path):
    store = RunStore(tmp_path / "run", "generate")
    store.open(overwrite=False)
    store.write_shard(table(["p"], [0]))
    store.write_manifest({"config": {}})
    store.log_path.write_text("old log\n")
    store.close()
    store.open(overwrite=True)
    assert store.shards() == [] and not store.manifest_path.exists() and not store.log_path.exists()
    store.close()


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(CurateError, match="is not empty and holds no curate run"):
        RunStore(tmp_path, "generate").check({}, overwrite=True)


def test_another_stage_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"stage": "filter", "config": {}}))
    with pytest.raises(CurateError, match="holds a `filter` run"):
        RunStore(tmp_path, "generate").check({}, overwrite=False)


def test_lock_refuses_a_second_writer(tmp_path):
    first = RunStore(tmp_path / "run", "generate")
    first.open(overwrite=False)
    with pytest.raises(CurateError, match="another curate process is writing this run"):
        RunStore(tmp_path / "run", "generate").open(overwrite=False)
    first.close()


def test_diff_config_is_readable():
    assert diff_config({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}, "d": "x"}) == ["b.c: 2 → 3", 'd: null → "x"']


# -- the status lifecycle (open_run + session) ---------------------------------------------


def test_a_session_completes_with_stage_config_command_versions_and_counts(tmp_path):
    run = open_run(tmp_path / "run", "filter", {"a": 1}, command=["curate", "filter"], inputs={"path": "x"})
    assert not run.root.exists()  # open_run checks; it writes nothing
    with run.session() as manifest:
        assert json.loads(run.manifest_path.read_text())["status"] == "running"
        manifest["counts"] = {"rows": 3}
        run.update(progress=1)
        assert json.loads(run.manifest_path.read_text())["progress"] == 1
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert m["status"] == "complete" and m["stage"] == "filter" and m["config"] == {"a": 1}
    assert m["command"] == ["curate", "filter"] and m["inputs"] == {"path": "x"} and m["counts"] == {"rows": 3}
    assert m["versions"]["curate"] and m["created"] and m["updated"] and m["timings"]["seconds"] >= 0


def test_ctrl_c_leaves_the_run_interrupted_and_it_resumes(tmp_path):
    run = open_run(tmp_path / "run", "generate", {"a": 1})
    with pytest.raises(KeyboardInterrupt):
        with run.session():
            raise KeyboardInterrupt
    assert json.loads(run.manifest_path.read_text())["status"] == "interrupted"
    again = open_run(tmp_path / "run", "generate", {"a": 1})
    assert again.resuming
    with again.session() as manifest:
        assert manifest["created"] == json.loads(run.manifest_path.read_text())["created"]
    assert json.loads(run.manifest_path.read_text())["status"] == "complete"


def test_sigterm_leaves_the_run_interrupted(tmp_path):
    before = signal.getsignal(signal.SIGTERM)  # ray.init, run earlier in this process, installs its own
    run = open_run(tmp_path / "run", "filter", {})
    with pytest.raises(KeyboardInterrupt):
        with run.session():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the signal arrives before this ends
    assert json.loads(run.manifest_path.read_text())["status"] == "interrupted"
    assert signal.getsignal(signal.SIGTERM) is before  # put back


def test_an_error_leaves_the_run_failed_with_the_error(tmp_path):
    run = open_run(tmp_path / "run", "generate", {})
    with pytest.raises(ValueError):
        with run.session():
            run.write_shard(table(["p"], [0]))
            raise ValueError("the teacher fell over")
    assert read_run(run.root)["problem_id"].to_list() == ["p"]  # what finished reads, as `curate show` does
    m = json.loads(run.manifest_path.read_text())
    assert m["status"] == "failed" and m["error"] == "the teacher fell over"
    with open_run(tmp_path / "run", "generate", {}).session():
        pass
    assert "error" not in json.loads(run.manifest_path.read_text())


def test_a_second_session_on_the_same_run_is_refused(tmp_path):
    with open_run(tmp_path / "run", "generate", {}).session():
        with pytest.raises(CurateError, match="another curate process is writing this run"):
            with open_run(tmp_path / "run", "generate", {}).session():
                pass


def test_a_different_config_is_refused_unless_overwrite(tmp_path):
    with open_run(tmp_path / "run", "select", {"seed": 0}).session():
        (tmp_path / "run" / "part-00000.parquet").write_bytes(b"old")
    with pytest.raises(CurateError, match=r"different config \(seed: 0 → 1\); re-run with --overwrite"):
        open_run(tmp_path / "run", "select", {"seed": 1})
    (tmp_path / "run" / "checkpoint-5").mkdir()
    run = open_run(tmp_path / "run", "select", {"seed": 1}, overwrite=True)
    assert not run.resuming
    with run.session(clear=("checkpoint-*",)):
        assert not (tmp_path / "run" / "part-00000.parquet").exists()
        assert not (tmp_path / "run" / "checkpoint-5").exists()
    assert json.loads(run.manifest_path.read_text())["config"] == {"seed": 1}


def test_a_replace_session_swaps_in_a_whole_folder_or_leaves_the_old_one(tmp_path):
    out = tmp_path / "mix"
    (tmp_path / ".tmp-99999-mix").mkdir()  # a killed writer's half folder
    with pytest.raises(ValueError):
        with open_run(out, "mix", {"v": 1}).session(replace=True) as _:
            raise ValueError("no")
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing left behind
    run = open_run(out, "mix", {"v": 1})
    with run.session(replace=True):
        assert run.dir != out and not (out / "manifest.json").exists()
        (run.dir / "data.txt").write_text("first")
    assert (out / "data.txt").read_text() == "first"
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
    run = open_run(out, "mix", {"v": 2}, overwrite=True)
    with pytest.raises(KeyboardInterrupt):
        with run.session(replace=True):
            (run.dir / "data.txt").write_text("second, half")
            raise KeyboardInterrupt
    assert (out / "data.txt").read_text() == "first"  # the old output, whole
    assert json.loads((out / "manifest.json").read_text())["config"] == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mix"]


def test_atomic_writers_leave_the_old_file_on_error(tmp_path):
    path = tmp_path / "x.json"
    write_json(path, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError
    assert json.loads(path.read_text()) == {"a": 1} and sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]
    write_parquet_atomic(pl.DataFrame({"a": [1]}), tmp_path / "t.parquet")
    assert pl.read_parquet(tmp_path / "t.parquet")["a"].to_list() == [1]


# -- one table reader ------------------------------------------------------------------------


def test_open_table_reads_the_same_rows_from_every_kind_of_source(tmp_path):
    rows = pl.DataFrame({"problem_id": ["p1", "p2", "p3"], "sample_index": [0, 0, 1], "problem": ["a", "b", "c"]})
    run = RunStore(tmp_path / "gen", "generate")
    run.open(overwrite=False)
    run.write_shard(rows[:2].to_arrow())
    run.write_shard(rows[2:].to_arrow())
    run.write_manifest({"status": "complete", "config": {}})
    run.close()
    rows.write_parquet(tmp_path / "rows.parquet")
    rows.write_ndjson(tmp_path / "rows.jsonl")
    (tmp_path / "rows.json").write_text(json.dumps({"data": rows.to_dicts()}))
    (tmp_path / "folder").mkdir()
    rows[:1].write_parquet(tmp_path / "folder" / "a.parquet")
    rows[1:].write_parquet(tmp_path / "folder" / "b.parquet")
    datasets = pytest.importorskip("datasets")
    datasets.DatasetDict({"train": datasets.Dataset(rows.to_arrow())}).save_to_disk(str(tmp_path / "ds"))
    kinds = {"gen": "generate", "rows.parquet": "parquet", "rows.jsonl": "jsonl", "rows.json": "json",
             "folder": "parquet-folder", "ds": "datasets"}
    for name, kind in kinds.items():
        table = open_table(tmp_path / name)
        assert table.kind == kind, name
        assert isinstance(table.scan(), pl.LazyFrame)
        assert table.read().with_columns(pl.col("sample_index").cast(pl.Int64)).equals(rows), name
        assert table.scan(["problem"]).collect()["problem"].to_list() == ["a", "b", "c"]
        assert len(table.fingerprint()) == 64
    assert open_table(tmp_path / "gen").manifest["status"] == "complete"
    assert open_table(tmp_path / "rows.parquet").manifest is None


def test_open_table_refuses_what_it_cannot_read_in_one_line(tmp_path):
    run = open_run(tmp_path / "f", "filter", {})
    with pytest.raises(KeyboardInterrupt):
        with run.session():
            raise KeyboardInterrupt
    with pytest.raises(CurateError, match="the filter run is interrupted; finish it first"):
        open_table(tmp_path / "f")
    (tmp_path / "x.csv").write_text("a\n1\n")
    with pytest.raises(CurateError, match="unsupported file"):
        open_table(tmp_path / "x.csv")
    with pytest.raises(CurateError, match="nope.parquet: no such file or folder"):
        open_table(tmp_path / "nope.parquet")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(CurateError, match=r"bad.parquet: unreadable \("):
        open_table(tmp_path / "bad.parquet").read()


@pytest.mark.parametrize("text, hub", [("openai/gsm8k", True), ("gsm8k", True), ("HuggingFaceH4/MATH-500", True),
                                       ("meta/Llama-3.1-8B", True), ("data.jsonl", False), ("a/b/c", False),
                                       ("no such thing", False), ("owner/set.parquet", False)])
def test_is_hub_name(text, hub):
    assert is_hub_name(text) is hub


def test_an_existing_path_is_never_a_hub_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gsm8k").mkdir()
    assert not is_hub_name("gsm8k")
