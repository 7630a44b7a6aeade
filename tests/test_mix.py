"""`curate mix` and `curate card`: exact counts under down- and up-sampling (stratified by
domain), byte-for-byte reproducibility, the messages shape, num_tokens, the Hub layout,
the card (YAML checked offline, plots present), lineage from generate to mix, bad
specs, and the mixture loading in TRL's SFTTrainer."""

import json
from importlib import import_module

import polars as pl
import pytest

from curate.errors import CurateError
from helpers import curate

card, mix = import_module("curate.card"), import_module("curate.mix")  # curate.mix is the API function


def reasoning_rows(n_math=20, n_code=10):
    rows = []
    for i in range(n_math + n_code):
        domain = "math" if i < n_math else "code"
        think = None if i % 7 == 3 else f"step {i}: work it out"  # some rows without a <think> block
        completion = f"<think>\n{think}\n</think>\n\nanswer {i}" if think else f"plain answer {i}"
        rows.append({"problem_id": f"p{i}", "sample_id": f"p{i}:t:0", "source": "gsm8k", "domain": domain,
                     "problem": f"Problem number {i}?", "completion": completion, "reasoning": think,
                     "answer": f"answer {i}" if think else None, "run": "runs/x/generate"})
    return rows


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("mix-sources")
    pl.DataFrame(reasoning_rows()).write_parquet(root / "reasoning.parquet")
    chat = [{"messages": [{"role": "user", "content": f"hi {i}"}, {"role": "assistant", "content": f"hello {i}"}]}
            for i in range(5)]
    (root / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chat))
    return root


def build(sources, out, *extra, seed=0, **options):
    return mix.run(mix.MixOptions(out=str(out), sources=[f"reasoning={sources / 'reasoning.parquet'}:12",
                                                         f"general={sources / 'chat.jsonl'}:13", *extra],
                                  allow_upsample=True, no_cot=("general",), seed=seed, progress=False,
                                  command=["curate", "mix", "..."], **options))


def read(out, split="train"):
    return pl.concat([pl.read_parquet(f) for f in sorted((out / "data").glob(f"{split}-*.parquet"))])


def test_exact_counts_stratified_down_and_repeated_up(sources, tmp_path):
    m = build(sources, tmp_path / "mix")
    df = read(tmp_path / "mix")
    assert df.height == 25 and df.columns == list(mix.COLUMNS)
    assert df.group_by("source").len().sort("source").rows() == [("general", 13), ("reasoning", 12)]
    # down-sampling 12 of 30 keeps the domain shares (20 math : 10 code)
    assert df.filter(pl.col("source") == "reasoning").group_by("domain").len().sort("domain").rows() == [
        ("code", 4), ("math", 8)]
    assert df.filter(pl.col("source") == "reasoning")["sample_id"].is_unique().all()
    # up-sampling 13 from 5: every row twice, 3 of them a third time
    counts = sorted(df.filter(pl.col("source") == "general").group_by("sample_id").len()["len"].to_list())
    assert counts == [2, 2, 3, 3, 3]
    general = next(s for s in m["sources"] if s["name"] == "general")
    assert (general["requested"], general["available"], general["delivered"], general["upsampled"],
            general["full_passes"], general["repeated_rows"]) == (13, 5, 13, True, 2, 8)
    # rows of all sources are shuffled together
    assert df["source"].to_list() != sorted(df["source"].to_list())


def test_ratios_of_a_total_and_largest_remainders():
    specs = [mix.parse_source("a=x:0.5"), mix.parse_source("b=y:25%"), mix.parse_source("c=z:26")]
    mix.resolve_targets(specs, 103)
    assert [s.target for s in specs] == [51, 26, 26]  # 51.5 + 25.75 -> 77 rows; .75 > .5 gets the extra one
    assert mix.largest_remainder([20, 10], 12) == [8, 4] and sum(mix.largest_remainder([1, 1, 1], 10)) == 10
    with pytest.raises(CurateError, match="add up to 78 rows, not --total 100"):
        mix.resolve_targets([mix.parse_source("a=x:52"), mix.parse_source("b=y:26")], 100)


def test_same_command_same_parquet_bytes(sources, tmp_path):
    for name in ("a", "b"):
        mix.run(mix.MixOptions(out=str(tmp_path / name), sources=[f"reasoning={sources / 'reasoning.parquet'}:20"],
                               seed=3, test_size=0.25, progress=False))
    for split in ("train", "test"):
        a = (tmp_path / "a" / "data" / f"{split}-00000-of-00001.parquet").read_bytes()
        b = (tmp_path / "b" / "data" / f"{split}-00000-of-00001.parquet").read_bytes()
        assert a == b
    mix.run(mix.MixOptions(out=str(tmp_path / "c"), sources=[f"reasoning={sources / 'reasoning.parquet'}:20"],
                           seed=4, test_size=0.25, progress=False))
    assert read(tmp_path / "c")["sample_id"].to_list() != read(tmp_path / "a")["sample_id"].to_list()
    train, test = read(tmp_path / "a"), read(tmp_path / "a", "test")
    assert train.height + test.height == 20 and test.height >= 5
    assert not set(train["problem_id"]) & set(test["problem_id"])  # whole problems per split


def test_messages_shape_and_num_tokens(sources, tmp_path):
    build(sources, tmp_path / "mix")
    df = read(tmp_path / "mix")
    tok = mix.load_tokenizer(None)
    for row in df.iter_rows(named=True):
        roles = [m["role"] for m in row["messages"]]
        assert roles == ["user", "assistant"]
        assistant = row["messages"][1]["content"]
        assert assistant.startswith("<think>\n") and "\n</think>\n\n" in assistant
        expected = sum(len(tok(m["content"], add_special_tokens=False)["input_ids"]) for m in row["messages"])
        assert row["num_tokens"] == expected
    for row in df.filter(pl.col("source") == "reasoning").iter_rows(named=True):
        i = int(row["sample_id"][1:].split(":")[0])
        assert row["messages"][0]["content"] == f"Problem number {i}?"
        if i % 7 == 3:  # no <think> block in the source: an empty one, then the completion
            assert row["messages"][1]["content"] == f"<think>\n\n</think>\n\nplain answer {i}"
        else:
            assert row["messages"][1]["content"] == f"<think>\nstep {i}: work it out\n</think>\n\nanswer {i}"
    general = df.filter(pl.col("source") == "general")["messages"].to_list()
    assert all(m[1]["content"].startswith("<think>\n\n</think>\n\nhello ") for m in general)  # --no-cot


def test_generated_token_counts_are_reused_when_the_tokenizer_matches(tmp_path):
    """Rows whose `model` is the tokenizer's name keep generate's completion_tokens (the
    problem's turn is counted); other rows are tokenised. Against --token-counts recount:
    the same rows, the same order, the same splits, the same messages."""
    from curate.embedded import EMBEDDED_NAME

    rows = [dict(r, completion_tokens=1000 + i, model=EMBEDDED_NAME if i % 2 else "another-model")
            for i, r in enumerate(reasoning_rows())]
    pl.DataFrame(rows).write_parquet(tmp_path / "gen.parquet")
    runs = {}
    for mode in ("reuse", "recount"):
        runs[mode] = mix.run(mix.MixOptions(out=str(tmp_path / mode), sources=[f"r={tmp_path / 'gen.parquet'}:24"],
                                            test_size=0.25, token_counts=mode, progress=False))
    for split in ("train", "test"):
        reuse, recount = read(tmp_path / "reuse", split), read(tmp_path / "recount", split)
        assert reuse.drop("num_tokens").equals(recount.drop("num_tokens"))
        tok = mix.load_tokenizer(None)
        for a, b in zip(reuse.iter_rows(named=True), recount.iter_rows(named=True)):
            i = int(a["sample_id"][1:].split(":")[0])
            if i % 2:  # matches: the problem's tokens + the generated count
                user = len(tok(a["messages"][0]["content"], add_special_tokens=False)["input_ids"])
                assert a["num_tokens"] == user + 1000 + i != b["num_tokens"]
            else:
                assert a["num_tokens"] == b["num_tokens"]
    assert runs["reuse"]["token_counts"]["tokenizer_name"] == EMBEDDED_NAME
    ids = pl.concat([read(tmp_path / "reuse", split) for split in ("train", "test")])["sample_id"]
    odd = sum(int(i[1:].split(":")[0]) % 2 for i in ids)
    assert runs["reuse"]["sources"][0]["num_tokens"] == {"reused": odd, "counted": 24 - odd} and 0 < odd < 24
    assert runs["recount"]["sources"][0]["num_tokens"] == {"reused": 0, "counted": 24}


def test_rows_order_and_splits_are_those_of_the_in_memory_mix(sources, tmp_path):
    """The streaming mix (a key scan, then only the picked rows converted) delivers what
    the mix that converted every row in memory did (commit 7654117 wrote these lists on
    this very input): the same rows, in the same order, in the same splits."""
    build(sources, tmp_path / "mix", missing_think="drop", test_size=0.2)
    train, test = read(tmp_path / "mix"), read(tmp_path / "mix", "test")
    assert train["sample_id"].to_list() == [
        "general:1", "general:4", "p18:t:0", "p5:t:0", "p7:t:0", "p6:t:0", "general:2", "general:4", "general:2",
        "general:0", "general:1", "p13:t:0", "p26:t:0", "general:4", "general:0", "p25:t:0", "p23:t:0", "general:1",
        "p22:t:0", "general:2"]
    assert test["sample_id"].to_list() == ["p14:t:0", "general:3", "p9:t:0", "p1:t:0", "general:3"]
    assert (train["num_tokens"].sum(), test["num_tokens"].sum()) == (419, 110)


def test_a_mixture_is_a_source_too(sources, tmp_path):
    build(sources, tmp_path / "first")
    m = mix.run(mix.MixOptions(out=str(tmp_path / "second"), sources=[f"again={tmp_path / 'first'}:10"],
                               progress=False))
    df = read(tmp_path / "second")
    assert m["sources"][0]["kind"] == "mix" and df.height == 10 and set(df["source"]) == {"again"}
    assert set(df["origin"]) <= {"reasoning", "general"}  # the first mixture's source names
    first = read(tmp_path / "first")
    assert set(df["sample_id"]) <= set(first["sample_id"])


def test_token_counts_in_worker_processes_match_one_process(monkeypatch):
    tok = mix.load_tokenizer(None)
    messages = pl.Series([[{"role": "user", "content": f"What is {i} + {i}?"},
                           {"role": "assistant", "content": "<think>\nadd\n</think>\n\n" + "two " * i}]
                          for i in range(60)])
    one = mix.TokenCounter(tok, 1).count(messages)
    monkeypatch.setattr(mix.TokenCounter, "MIN_PARALLEL", 1)
    monkeypatch.setattr(mix.TokenCounter, "CHUNK", 7)  # 18 chunks over 2 processes, results in order
    counter = mix.TokenCounter(tok, 2)
    try:
        assert counter.count(messages).tolist() == one.tolist()
    finally:
        counter.close()
    assert one[5] == (len(tok("What is 5 + 5?")["input_ids"])
                      + len(tok("<think>\nadd\n</think>\n\n" + "two " * 5)["input_ids"]))


def test_a_datasets_folder_with_messages_is_a_source(tmp_path):
    import datasets

    chat = datasets.Dataset.from_list([{"messages": [{"role": "user", "content": f"q{i}"},
                                                     {"role": "assistant", "content": f"a{i}"}], "domain": "chat"}
                                       for i in range(6)])
    datasets.DatasetDict({"train": chat}).save_to_disk(str(tmp_path / "chat"))
    m = mix.run(mix.MixOptions(out=str(tmp_path / "m"), sources=[f"chat={tmp_path / 'chat'}:4"], progress=False))
    df = read(tmp_path / "m")
    assert m["sources"][0]["kind"] == "datasets" and df.height == 4 and set(df["domain"]) == {"chat"}
    assert all(r[1]["content"].startswith("a") for r in df["messages"].to_list())  # kept as they are


def test_missing_think_drop(sources, tmp_path):
    m = mix.run(mix.MixOptions(out=str(tmp_path / "m"), sources=[f"r={sources / 'reasoning.parquet'}:10"],
                               missing_think="drop", progress=False))
    df = read(tmp_path / "m")
    assert df.height == 10
    assert not df["messages"].list.get(1).struct.field("content").str.starts_with("<think>\n\n</think>").any()
    assert m["sources"][0]["available"] == 30 - 4 and m["sources"][0]["dropped_without_think"] == 4


def test_layout_card_and_plots(sources, tmp_path):
    import datasets
    from huggingface_hub import DatasetCard
    from huggingface_hub.repocard import metadata_load

    out = tmp_path / "mix"
    mix.run(mix.MixOptions(out=str(out), sources=[f"reasoning={sources / 'reasoning.parquet'}:12",
                                                  f"general={sources / 'chat.jsonl'}:4"],
                           test_size=0.2, license="mit", source_licenses={"reasoning": "cc-by-4.0"},
                           pretty_name="tiny-mix", progress=False))
    assert sorted(p.name for p in (out / "data").iterdir()) == ["test-00000-of-00001.parquet",
                                                               "train-00000-of-00001.parquet"]
    ds = datasets.load_from_disk(str(out / "dataset"))
    assert set(ds) == {"train", "test"} and ds["train"].num_rows + ds["test"].num_rows == 16
    hub = datasets.load_dataset("parquet", data_files={"train": str(out / "data" / "train-*")}, split="train")
    assert hub.features == ds["train"].features and hub.num_rows == ds["train"].num_rows
    meta = metadata_load(out / "README.md")
    assert meta["license"] == "mit" and meta["pretty_name"] == "tiny-mix" and meta["size_categories"] == ["n<1K"]
    assert meta["configs"] == [{"config_name": "default", "data_files": [
        {"split": "train", "path": "data/train-*"}, {"split": "test", "path": "data/test-*"}]}]
    text = DatasetCard.load(out / "README.md").text
    for section in ("## Mixture composition", "## Token lengths per domain", "## Filter chain and funnel",
                    "## Rejection sampling", "### Decontamination", "## How it was made", "## How to load it"):
        assert section in text
    assert "| reasoning | parquet | 12 | 30 | 12 | no (stratified by domain) | code 4, math 8 |" in text
    assert "**reasoning** (licence: `cc-by-4.0`)" in text and "**general** (licence: not given" in text
    for png in ("token_lengths.png",):
        assert (out / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"](plots/{png})" in text
    assert card.validate(out)["license"] == "mit"
    # a broken card is caught offline
    (out / "README.md").write_text((out / "README.md").read_text().replace("path: data/train-*", "path: data/nope-*"))
    with pytest.raises(CurateError, match=r"data_files train: 'data/nope-\*' matches no file"):
        card.validate(out)
    r = curate("card", out, "--license", "apache-2.0")  # rewrites it
    assert "metadata checked offline" in r.stdout and metadata_load(out / "README.md")["license"] == "apache-2.0"


@pytest.mark.parametrize("spec, extra, message", [
    ("r={src}/reasoning.parquet:31", [], "target 31 is larger than the source's 30 rows; pass --allow-upsample"),
    ("r={src}/nope.parquet:5", [], "r={src}/nope.parquet: no such file or folder"),
    ("r=nobody/no-such-dataset:5", [], "nobody/no-such-dataset: could not load the Hub dataset"),  # offline
    ("r={src}/bad.parquet:5", [], "needs a `messages` column, or `problem` and `completion` (columns: question)"),
    ("r={src}/reasoning.parquet:0.5", [], "a ratio target needs --total N"),
    ("r={src}/reasoning.parquet", [], "expected NAME=PATH:COUNT or NAME=PATH:RATIO"),
    ("r={src}/reasoning.parquet:5", ["--no-cot", "x"], "--no-cot x: unknown source (sources: r)"),
    ("r={src}/reasoning.parquet:5", ["--total", "6"], "the targets add up to 5 rows, not --total 6"),
])
def test_bad_specs_are_one_line_exit_2_and_write_nothing(sources, tmp_path, spec, extra, message):
    pl.DataFrame({"question": ["q"]}).write_parquet(sources / "bad.parquet")
    out = tmp_path / "out"
    r = curate("mix", "--out", out, "--source", spec.format(src=sources), *extra, "--no-progress", check=False)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message.format(src=sources) in lines[0]
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))


BIG = 123456789012345678901234567890  # beyond 64 bits: JSON allows it, Parquet has no such integer


@pytest.mark.parametrize("file, rows, column, dtype", [
    ("empty.jsonl", [{"problem": "q", "completion": "<think>\nx\n</think>\n\ny", "problem_id": {}}] * 2,
     "problem_id", "Struct({})"),
    ("big.jsonl", [{"problem": "q", "completion": "<think>\nx\n</think>\n\ny", "problem_id": BIG}] * 2,
     "problem_id", "Int128"),
    ("array.json", [{"problem": "q", "completion": "<think>\nx\n</think>\n\ny", "domain": {}}],
     "domain", "Struct({})"),
])
def test_a_column_parquet_cannot_store_is_one_line_naming_the_file_and_column(sources, tmp_path, file, rows, column,
                                                                               dtype):
    """JSON's `{}` and integers beyond 64 bits (as `curate filter` refuses them, curate.store.
    check_storable): exit 2, one line naming the source, file and column; nothing written, not
    even after a good source was read."""
    bad = tmp_path / file
    bad.write_text(json.dumps(rows) if file.endswith(".json") else "".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    r = curate("mix", "--out", out, "--source", f"good={sources / 'reasoning.parquet'}:5", "--source", f"bad={bad}:1",
               "--no-progress", check=False)
    assert r.returncode == 2, r.stderr
    assert r.stderr == (f"error: bad={bad}: column {column!r}: Parquet cannot store its type, {dtype} (an object "
                        "without keys, {}, or an integer beyond 64 bits)\n")
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))


def test_chat_turns_with_fields_parquet_cannot_store_are_mixed_by_their_role_and_content(sources, tmp_path):
    """A turn's other fields are not copied (only `role` and `content`), so a `{}` among them is no fault."""
    turns = tmp_path / "turns.jsonl"
    turns.write_text(json.dumps({"messages": [{"role": "user", "content": "q", "meta": {}},
                                              {"role": "assistant", "content": "<think>\nx\n</think>\n\ny",
                                               "meta": {}}]}) + "\n")
    out = tmp_path / "out"
    curate("mix", "--out", out, "--source", f"chat={turns}:1", "--no-progress")
    rows = pl.read_parquet(out / "data" / "*.parquet")["messages"].to_list()
    assert rows == [[{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>\nx\n</think>\n\ny"}]]


@pytest.mark.slow
def test_lineage_from_generate_to_mix_and_sft_trainer_reads_it(mixture_dir, tiny_model, tmp_path):
    from datasets import load_from_disk

    from curate.store import read_run

    root = mixture_dir.parent
    generated = read_run(root / "generate")
    ds = load_from_disk(str(mixture_dir / "dataset"))
    df = pl.concat([pl.from_arrow(ds[s].data.table) for s in ds])
    reasoning = df.filter(pl.col("source") == "reasoning")
    assert reasoning.height == 16
    joined = reasoning.join(generated, on="sample_id", how="left")
    assert joined["problem_id_right"].null_count() == 0 and (joined["problem_id"] == joined["problem_id_right"]).all()
    assert (joined["messages"].list.get(0).struct.field("content") == joined["problem"]).all()
    assert set(reasoning["run"]) == {str(root / "generate")}
    m = json.loads((mixture_dir / "manifest.json").read_text())
    src = next(s for s in m["sources"] if s["name"] == "reasoning")
    assert src["lineage"]["generate"]["model"] == str(tiny_model)
    assert src["lineage"]["filter"]["funnel"]["rows_in"] == 16 and src["lineage"]["select"]["config"]["policy"] == "all"
    assert "curate generate" in (mixture_dir / "README.md").read_text()
    # a generate run is a source too (e.g. general data from the general_cot template)
    g = mix.run(mix.MixOptions(out=str(tmp_path / "from-generate"), sources=[f"gen={root / 'generate'}:5"],
                               progress=False))
    assert g["sources"][0]["kind"] == "generate" and g["sources"][0]["lineage"]["generate"]["model"] == str(tiny_model)
    assert set(read(tmp_path / "from-generate")["sample_id"]) <= set(generated["sample_id"])

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model), processing_class=tokenizer,
                         train_dataset=ds["train"],
                         args=SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=1, per_device_train_batch_size=2,
                                        report_to=[], save_strategy="no", use_cpu=True, max_length=256))
    loss = trainer.train().training_loss
    assert loss > 0
