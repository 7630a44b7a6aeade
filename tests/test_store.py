import json

import pyarrow as pa
import pytest

from curate.errors import CurateError
from curate.store import RunStore, diff_config, read_run


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
