"""curate.inputs: reading problem sets (JSONL, JSON, Parquet, datasets folders, the Hub)."""

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import GSM8K_TEST, MATH500_TEST
from curate.errors import CurateError
from curate.inputs import OUTPUT_COLUMNS, InputSpec, load_problems

REPO = Path(__file__).resolve().parent.parent


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_parquet(path, columns, schema=None):
    pq.write_table(pa.table(columns, schema=schema), path)
    return path


def error_of(spec: InputSpec) -> str:
    """The message of the CurateError that loading `spec` raises; it must be one line."""
    with pytest.raises(CurateError) as caught:
        load_problems(spec)
    message = str(caught.value)
    assert "\n" not in message
    return message


def hash_id(source: str, problem: str) -> str:
    return hashlib.sha256(f"{source}\n{problem}".encode()).hexdigest()[:16]


def sha256_of(*paths) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


ROWS = [
    {"problem": "What is 1+1?", "answer": "2"},
    {"problem": "What is 2+3?", "answer": 5},
    {"problem": "Name a prime.", "answer": None},
]


# --- Formats ------------------------------------------------------------------------


def test_jsonl_columns_types_and_info(tmp_path):
    path = write_jsonl(tmp_path / "toy.jsonl", ROWS)
    frame, info = load_problems(InputSpec(str(path)))
    assert frame.columns == list(OUTPUT_COLUMNS)
    assert frame.columns == [
        "problem_id", "source", "domain", "problem", "reference_answer", "tests", "extra"
    ]
    assert frame.schema == pl.Schema({name: pl.String for name in OUTPUT_COLUMNS})
    assert frame.to_dicts() == [
        {
            "problem_id": hash_id("toy", "What is 1+1?"),
            "source": "toy",
            "domain": "math",
            "problem": "What is 1+1?",
            "reference_answer": "2",
            "tests": None,
            "extra": "{}",
        },
        {
            "problem_id": hash_id("toy", "What is 2+3?"),
            "source": "toy",
            "domain": "math",
            "problem": "What is 2+3?",
            "reference_answer": "5",
            "tests": None,
            "extra": "{}",
        },
        {
            "problem_id": hash_id("toy", "Name a prime."),
            "source": "toy",
            "domain": "math",
            "problem": "Name a prime.",
            "reference_answer": None,
            "tests": None,
            "extra": "{}",
        },
    ]
    assert info == {
        "path": str(path),
        "kind": "jsonl",
        "sha256": sha256_of(path),
        "rows": 3,
        "problem_column": "problem",
        "answer_column": "answer",
        "id_column": None,
    }


def test_jsonl_skips_blank_lines(tmp_path):
    path = tmp_path / "gaps.jsonl"
    path.write_text('\n{"problem": "a"}\n   \n\n{"problem": "b"}\n\n')
    frame, info = load_problems(InputSpec(str(path)))
    assert frame["problem"].to_list() == ["a", "b"]
    assert info["rows"] == 2
    assert info["answer_column"] is None
    assert frame["reference_answer"].to_list() == [None, None]


def test_jsonl_without_trailing_newline_and_crlf(tmp_path):
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b'{"problem": "a"}\r\n{"problem": "b"}')
    frame, _ = load_problems(InputSpec(str(path)))
    assert frame["problem"].to_list() == ["a", "b"]


def test_json_list(tmp_path):
    path = tmp_path / "list.json"
    path.write_text(json.dumps(ROWS, indent=2))
    frame, info = load_problems(InputSpec(str(path)))
    assert info["kind"] == "json"
    assert info["sha256"] == sha256_of(path)
    assert frame["problem"].to_list() == ["What is 1+1?", "What is 2+3?", "Name a prime."]
    assert frame["reference_answer"].to_list() == ["2", "5", None]
    assert frame["source"].to_list() == ["list"] * 3


def test_json_object_with_one_list_valued_key(tmp_path):
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"version": 2, "meta": {"n": [1]}, "data": ROWS}, indent=1))
    frame, info = load_problems(InputSpec(str(path)))
    assert info["kind"] == "json"
    assert frame["problem"].to_list() == ["What is 1+1?", "What is 2+3?", "Name a prime."]


def test_parquet(tmp_path):
    path = write_parquet(
        tmp_path / "set.parquet",
        {"question": ["q1", "q2"], "final_answer": [7, None], "level": [1, 2]},
    )
    frame, info = load_problems(InputSpec(str(path)))
    assert frame.columns == list(OUTPUT_COLUMNS)
    assert frame.to_dicts() == [
        {
            "problem_id": hash_id("set", "q1"),
            "source": "set",
            "domain": "math",
            "problem": "q1",
            "reference_answer": "7",
            "tests": None,
            "extra": '{"level": 1}',
        },
        {
            "problem_id": hash_id("set", "q2"),
            "source": "set",
            "domain": "math",
            "problem": "q2",
            "reference_answer": None,
            "tests": None,
            "extra": '{"level": 2}',
        },
    ]
    assert info == {
        "path": str(path),
        "kind": "parquet",
        "sha256": sha256_of(path),
        "rows": 2,
        "problem_column": "question",
        "answer_column": "final_answer",
        "id_column": None,
    }


def test_datasets_dataset_folder(tmp_path):
    import datasets

    folder = tmp_path / "saved"
    rows = [
        {"problem": "What is 1+1?", "answer": 2, "level": "easy"},
        {"problem": "Name a prime.", "answer": None, "level": None},
    ]
    datasets.Dataset.from_list(rows).save_to_disk(str(folder))
    frame, info = load_problems(InputSpec(str(folder)))
    assert info["kind"] == "datasets"
    assert info["rows"] == 2
    assert frame["problem"].to_list() == ["What is 1+1?", "Name a prime."]
    assert frame["reference_answer"].to_list() == ["2", None]
    assert frame["extra"].to_list() == ['{"level": "easy"}', '{"level": null}']
    assert frame["problem_id"].to_list() == [hash_id("saved", row["problem"]) for row in rows]
    assert frame["source"].to_list() == ["saved"] * 2
    files = sorted(file for file in folder.rglob("*") if file.is_file())
    assert info["sha256"] == sha256_of(*files)


def test_datasets_dict_folder_uses_split(tmp_path):
    import datasets

    folder = tmp_path / "dd"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list([{"prompt": "train problem", "answer": "1"}]),
            "test": datasets.Dataset.from_list(
                [{"prompt": "test problem", "answer": "2"}, {"prompt": "other", "answer": "3"}]
            ),
        }
    ).save_to_disk(str(folder))
    frame, info = load_problems(InputSpec(str(folder), split="test"))
    assert frame["problem"].to_list() == ["test problem", "other"]
    assert frame["reference_answer"].to_list() == ["2", "3"]
    assert info["problem_column"] == "prompt"
    assert info["rows"] == 2
    frame, _ = load_problems(InputSpec(str(folder)))  # split defaults to train
    assert frame["problem"].to_list() == ["train problem"]
    assert error_of(InputSpec(str(folder), split="validation")) == (
        f'{folder}: no split "validation"; the splits are: train, test; pass --split'
    )


# --- Real data ----------------------------------------------------------------------


def test_gsm8k_answers_reduced_to_the_number_after_hashes(problems_file):
    frame, info = load_problems(InputSpec(str(problems_file)))
    assert info["problem_column"] == "question"
    assert info["answer_column"] == "answer"
    assert frame["reference_answer"].to_list() == ["18", "3", "70000", "540", "20", "64", "260", "160"]
    first = json.loads(problems_file.read_text().splitlines()[0])
    assert frame["problem"][0] == first["question"]
    assert frame["problem_id"][0] == hash_id("problems", first["question"])
    assert frame["problem_id"][0] == "1c8772a334a8a594"  # pinned: ids must never change
    assert frame["extra"].to_list() == ["{}"] * 8


def test_gsm8k_all_rows(tmp_path):
    path = GSM8K_TEST
    frame, info = load_problems(InputSpec(str(path)))
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert info["rows"] == len(rows) == 1319
    expected = [row["answer"].splitlines()[-1].removeprefix("####").strip() for row in rows]
    assert frame["reference_answer"].to_list() == expected
    assert frame["problem_id"].n_unique() == 1319


def test_math500_answer_column_and_extra():
    path = MATH500_TEST
    frame, info = load_problems(InputSpec(str(path), limit=5))
    rows = [json.loads(line) for line in path.read_text().splitlines()[:5]]
    assert info["problem_column"] == "problem"
    assert info["answer_column"] == "answer"
    assert info["rows"] == 5
    assert frame["reference_answer"].to_list() == [row["answer"] for row in rows]
    assert frame["reference_answer"][0] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    extra = json.loads(frame["extra"][0])
    assert list(extra) == ["solution", "subject", "level", "unique_id"]
    assert extra["subject"] == "Precalculus"
    assert extra["level"] == 2
    assert extra["unique_id"] == "test/precalculus/807.json"


def test_math500_unique_id_as_id_column():
    path = MATH500_TEST
    frame, info = load_problems(InputSpec(str(path), id_column="unique_id", limit=2))
    assert info["id_column"] == "unique_id"
    assert frame["problem_id"].to_list() == [
        "test/precalculus/807.json",
        "test/intermediate_algebra/1994.json",
    ]
    assert "unique_id" not in json.loads(frame["extra"][0])


# --- Columns ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "keys, expected",
    [
        (["instruction", "prompt", "question", "problem"], "problem"),
        (["instruction", "prompt", "question"], "question"),
        (["instruction", "prompt"], "prompt"),
        (["instruction"], "instruction"),
    ],
)
def test_auto_problem_column_order(tmp_path, keys, expected):
    path = write_jsonl(tmp_path / "p.jsonl", [{key: f"text of {key}" for key in keys}])
    frame, info = load_problems(InputSpec(str(path)))
    assert info["problem_column"] == expected
    assert frame["problem"][0] == f"text of {expected}"
    assert json.loads(frame["extra"][0]) == {key: f"text of {key}" for key in keys if key != expected}


@pytest.mark.parametrize(
    "keys, expected",
    [
        # a generate run's rows hold both: the gold `reference_answer` and the model's `answer`
        (["final_answer", "reference_answer", "answer"], "reference_answer"),
        (["final_answer", "answer"], "answer"),
        (["final_answer"], "final_answer"),
        ([], None),
    ],
)
def test_auto_answer_column_order(tmp_path, keys, expected):
    row = {"problem": "p", **{key: f"value of {key}" for key in keys}}
    path = write_jsonl(tmp_path / "a.jsonl", [row])
    frame, info = load_problems(InputSpec(str(path)))
    assert info["answer_column"] == expected
    assert frame["reference_answer"][0] == (None if expected is None else f"value of {expected}")


def test_explicit_columns(tmp_path):
    path = write_jsonl(
        tmp_path / "x.jsonl",
        [{"problem": "not this", "body": "this one", "answer": "no", "gold": 42, "key": 7}],
    )
    frame, info = load_problems(
        InputSpec(str(path), problem_column="body", answer_column="gold", id_column="key")
    )
    assert (info["problem_column"], info["answer_column"], info["id_column"]) == ("body", "gold", "key")
    assert frame.row(0, named=True) == {
        "problem_id": "7",
        "source": "x",
        "domain": "math",
        "problem": "this one",
        "reference_answer": "42",
        "tests": None,
        "extra": '{"problem": "not this", "answer": "no"}',
    }


def test_answer_column_found_in_a_later_row(tmp_path):
    path = write_jsonl(tmp_path / "late.jsonl", [{"problem": "a"}, {"problem": "b", "answer": "4"}])
    frame, info = load_problems(InputSpec(str(path)))
    assert info["answer_column"] == "answer"
    assert frame["reference_answer"].to_list() == [None, "4"]


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Janet sells 9 eggs.\nShe makes $18.\n#### 18", "18"),
        ("#### 1,000", "1,000"),
        ("work\n####   -3.5  \n", "-3.5"),
        ("#### 18 is in the middle\nnot the last line", "#### 18 is in the middle\nnot the last line"),
        ("\\frac{1}{2}", "\\frac{1}{2}"),
        (18, "18"),
        (2.5, "2.5"),
        (0, "0"),
        (None, None),
    ],
)
def test_reference_answer_values(tmp_path, answer, expected):
    path = write_jsonl(tmp_path / "ans.jsonl", [{"problem": "p", "answer": answer}])
    frame, _ = load_problems(InputSpec(str(path)))
    assert frame["reference_answer"][0] == expected


def test_id_column_values_are_strings(tmp_path):
    path = write_jsonl(
        tmp_path / "ids.jsonl",
        [{"id": 1, "problem": "a"}, {"id": "b-2", "problem": "b"}, {"id": 3.5, "problem": "c"}],
    )
    frame, info = load_problems(InputSpec(str(path), id_column="id"))
    assert frame["problem_id"].to_list() == ["1", "b-2", "3.5"]
    assert frame["extra"].to_list() == ["{}"] * 3
    assert info["id_column"] == "id"


def test_an_id_column_is_the_problem_id_when_present(tmp_path):
    path = write_jsonl(tmp_path / "ids.jsonl", [{"id": 7, "problem": "a"}, {"id": "q-8", "problem": "b"}])
    frame, info = load_problems(InputSpec(str(path)))
    assert info["id_column"] == "id"
    assert frame["problem_id"].to_list() == ["7", "q-8"] and frame["extra"].to_list() == ["{}", "{}"]
    path = write_jsonl(tmp_path / "both.jsonl", [{"id": 1, "problem_id": "x", "problem": "a"}])
    frame, info = load_problems(InputSpec(str(path)))  # our own column name first
    assert info["id_column"] == "problem_id" and frame["problem_id"][0] == "x"
    assert json.loads(frame["extra"][0]) == {"id": 1}
    frame, info = load_problems(InputSpec(str(path), id_column="id"))  # --id-column still chooses
    assert frame["problem_id"][0] == "1" and json.loads(frame["extra"][0]) == {"problem_id": "x"}


def test_duplicate_ids_of_a_found_id_column_are_the_one_line_error(tmp_path):
    path = write_jsonl(tmp_path / "dup.jsonl", [{"id": 1, "problem": "a"}, {"id": 2, "problem": "b"},
                                                {"id": 1, "problem": "c"}])
    assert error_of(InputSpec(str(path))) == f'{path}:3: duplicate problem_id "1" (first seen on line 1)'
    path = write_parquet(tmp_path / "dup.parquet", {"problem": ["a", "b", "c"], "id": [5, 6, 5]})
    assert error_of(InputSpec(str(path))) == f'{path}: row 2: duplicate problem_id "5" (first seen on row 0)'


def test_hash_ids_are_stable_and_depend_on_source_and_problem(tmp_path):
    jsonl = write_jsonl(tmp_path / "same.jsonl", ROWS)
    parquet = write_parquet(
        tmp_path / "same.parquet", {"problem": [row["problem"] for row in ROWS], "answer": ["2", "5", None]}
    )
    first, _ = load_problems(InputSpec(str(jsonl)))
    again, _ = load_problems(InputSpec(str(jsonl)))
    from_parquet, _ = load_problems(InputSpec(str(parquet)))
    renamed, _ = load_problems(InputSpec(str(jsonl), source="other"))
    assert first["problem_id"].to_list() == again["problem_id"].to_list()
    assert first["problem_id"].to_list() == from_parquet["problem_id"].to_list()
    assert renamed["problem_id"].to_list() == [hash_id("other", row["problem"]) for row in ROWS]
    assert set(renamed["problem_id"]).isdisjoint(first["problem_id"])
    assert hash_id("toy", "What is 1+1?") == "8c759f406355de84"
    assert all(len(value) == 16 for value in first["problem_id"])


def test_source_and_domain(tmp_path):
    rows = [
        {"problem": "a", "source": "olympiad", "domain": "code"},
        {"problem": "b", "source": None, "domain": ""},
        {"problem": "c"},
    ]
    path = write_jsonl(tmp_path / "mixed.jsonl", rows)
    frame, _ = load_problems(InputSpec(str(path)))
    assert frame["source"].to_list() == ["olympiad", "mixed", "mixed"]
    assert frame["domain"].to_list() == ["code", "math", "math"]
    assert frame["problem_id"][0] == hash_id("olympiad", "a")
    assert frame["extra"].to_list() == ["{}"] * 3

    frame, _ = load_problems(InputSpec(str(path), source="mine", domain="science"))
    assert frame["source"].to_list() == ["mine"] * 3
    assert frame["domain"].to_list() == ["science"] * 3
    # given options win, and the row's own values are kept in extra
    assert json.loads(frame["extra"][0]) == {"source": "olympiad", "domain": "code"}


def test_extra_keeps_the_remaining_columns_in_order(tmp_path):
    row = {"z": 1, "problem": "p", "nested": {"a": [1, 2]}, "text": "héllo ∑", "answer": "1", "none": None}
    path = write_jsonl(tmp_path / "extra.jsonl", [row])
    frame, _ = load_problems(InputSpec(str(path)))
    assert frame["extra"][0] == '{"z": 1, "nested": {"a": [1, 2]}, "text": "héllo ∑", "none": null}'


def test_tests_column(tmp_path):
    rows = [
        {"problem": "a", "tests": '[{"input": "1", "output": "2"}]'},
        {"problem": "b", "tests": [{"input": "1", "output": "2"}]},
        {"problem": "c", "tests": {"fn": "f", "cases": [[1, 2]]}},
        {"problem": "d", "tests": None},
        {"problem": "e"},
    ]
    path = write_jsonl(tmp_path / "code.jsonl", rows)
    frame, _ = load_problems(InputSpec(str(path), domain="code"))
    assert frame["tests"].to_list() == [
        '[{"input": "1", "output": "2"}]',
        '[{"input": "1", "output": "2"}]',
        '{"fn": "f", "cases": [[1, 2]]}',
        None,
        None,
    ]
    assert frame["extra"].to_list() == ["{}"] * 5
    assert frame["domain"].to_list() == ["code"] * 5


def test_tests_column_from_parquet_struct_list(tmp_path):
    path = write_parquet(
        tmp_path / "code.parquet",
        {"problem": ["a", "b"], "tests": [[{"input": "1", "output": "2"}], None]},
    )
    frame, _ = load_problems(InputSpec(str(path)))
    assert frame["tests"].to_list() == ['[{"input": "1", "output": "2"}]', None]


def test_extra_from_parquet_dates_and_nulls(tmp_path):
    import datetime

    path = write_parquet(
        tmp_path / "dated.parquet",
        {"problem": ["a", "b"], "day": [datetime.date(2024, 1, 2), None], "tags": [["x"], []]},
    )
    frame, _ = load_problems(InputSpec(str(path)))
    assert frame["extra"].to_list() == ['{"day": "2024-01-02", "tags": ["x"]}', '{"day": null, "tags": []}']


# --- Limit --------------------------------------------------------------------------


def test_limit_keeps_first_rows(problems_file):
    frame, info = load_problems(InputSpec(str(problems_file), limit=3))
    assert info["rows"] == 3
    assert frame["reference_answer"].to_list() == ["18", "3", "70000"]
    # the sha256 is still that of the whole file
    assert info["sha256"] == sha256_of(problems_file)


def test_limit_larger_than_the_file(problems_file):
    frame, info = load_problems(InputSpec(str(problems_file), limit=100))
    assert info["rows"] == frame.height == 8


def test_limit_validates_only_the_kept_rows(tmp_path):
    path = tmp_path / "tail.jsonl"
    path.write_text('{"problem": "a"}\n{"problem": "b"}\n{"problem": 3}\nnot json\n')
    frame, _ = load_problems(InputSpec(str(path), limit=2))
    assert frame["problem"].to_list() == ["a", "b"]
    assert error_of(InputSpec(str(path), limit=3)) == (
        f'{path}:3: column "problem": expected a non-empty string, got a number (3)'
    )


def test_limit_on_json_and_parquet(tmp_path):
    json_path = tmp_path / "l.json"
    json_path.write_text(json.dumps([{"problem": "a"}, {"problem": "b"}, 5]))
    frame, _ = load_problems(InputSpec(str(json_path), limit=2))
    assert frame["problem"].to_list() == ["a", "b"]
    parquet = write_parquet(tmp_path / "l.parquet", {"problem": ["a", "b", None]})
    frame, info = load_problems(InputSpec(str(parquet), limit=2))
    assert frame["problem"].to_list() == ["a", "b"]
    assert info["rows"] == 2


@pytest.mark.parametrize("limit", [0, -1])
def test_limit_must_be_positive(problems_file, limit):
    assert error_of(InputSpec(str(problems_file), limit=limit)) == (
        f"--limit must be a positive number, got {limit}"
    )


# --- Errors: JSON syntax and encoding -------------------------------------------------


def test_malformed_jsonl_names_line_and_column(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"problem": "a"}\n\n{"problem": "x",}\n')
    assert error_of(InputSpec(str(path))) == (
        f"{path}:3:17: malformed JSON: Expecting property name enclosed in double quotes"
    )


def test_messages_use_the_path_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rel.jsonl").write_text('{"problem": 1}\n')
    (tmp_path / "rel.json").write_text("[1]")
    assert error_of(InputSpec("./rel.jsonl")) == (
        './rel.jsonl:1: column "problem": expected a non-empty string, got a number (1)'
    )
    assert error_of(InputSpec("./rel.json")) == "./rel.json:1:2: expected a JSON object, got a number (1)"


def test_truncated_jsonl_line(tmp_path):
    path = tmp_path / "cut.jsonl"
    path.write_text('{"problem": "a"}\n{"problem": "b"')
    assert error_of(InputSpec(str(path))) == f"{path}:2:16: malformed JSON: Expecting ',' delimiter"


def test_malformed_json_names_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"problem": "a"},\n  {"problem": "b" "answer": 1}\n]\n')
    assert error_of(InputSpec(str(path))) == f"{path}:3:19: malformed JSON: Expecting ',' delimiter"


def test_jsonl_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text('{"problem": "a"}\n  [1, 2]\n')
    assert error_of(InputSpec(str(path))) == f"{path}:2:3: expected a JSON object, got a list"
    path.write_text('"just a string"\n')
    assert error_of(InputSpec(str(path))) == f"{path}:1:1: expected a JSON object, got a string"


def test_json_item_that_is_not_an_object(tmp_path):
    path = tmp_path / "items.json"
    path.write_text('{"data": [\n  {"problem": "a"},\n\n     42\n]}')
    assert error_of(InputSpec(str(path))) == f"{path}:4:6: expected a JSON object, got a number (42)"


@pytest.mark.parametrize(
    "document, found",
    [
        ('"text"', "a string"),
        ('{"a": [1], "b": []}', "an object with 2 list-valued keys"),
        ('{"a": 1}', "an object with 0 list-valued keys"),
    ],
)
def test_json_without_one_list(tmp_path, document, found):
    path = tmp_path / "shape.json"
    path.write_text(document)
    assert error_of(InputSpec(str(path))) == (
        f"{path}: expected a list of objects or an object with one list-valued key "
        f'like {{"data": [...]}}, got {found}'
    )


def test_non_utf8_names_line_and_column_of_the_bad_byte(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"problem": "a"}\n{"problem": "\xc3\xa9t\xe9"}\n')
    # line 2: `{"problem": "` is 13 characters, then é (2 bytes, 1 character), then t
    assert error_of(InputSpec(str(path))) == (
        f"{path}:2:16: not valid UTF-8 (byte 0xe9); save the file as UTF-8"
    )
    json_path = tmp_path / "latin1.json"
    json_path.write_bytes(b'[\n{"problem": "a"},\n{"problem": "\xff"}\n]')
    assert error_of(InputSpec(str(json_path))) == (
        f"{json_path}:3:14: not valid UTF-8 (byte 0xff); save the file as UTF-8"
    )


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"problem": "a"}\n')
    frame, _ = load_problems(InputSpec(str(path)))
    assert frame["problem"].to_list() == ["a"]


# --- Errors: empty inputs -------------------------------------------------------------


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.json", "empty.parquet"])
def test_zero_byte_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    assert error_of(InputSpec(str(path))) == f"{path}: the file is empty"


@pytest.mark.parametrize("name", ["blank.jsonl", "blank.json"])
def test_only_blank_lines(tmp_path, name):
    path = tmp_path / name
    path.write_text("\n   \n\t\n")
    assert error_of(InputSpec(str(path))) == f"{path}: the file is empty (only blank lines)"


def test_empty_json_list(tmp_path):
    path = tmp_path / "none.json"
    path.write_text('{"data": []}')
    assert error_of(InputSpec(str(path))) == f"{path}: no problems (the list is empty)"


def test_empty_parquet_table(tmp_path):
    path = write_parquet(tmp_path / "none.parquet", {"problem": pa.array([], pa.string())})
    assert error_of(InputSpec(str(path))) == f"{path}: the table has no rows"


def test_empty_datasets_folder(tmp_path):
    import datasets

    folder = tmp_path / "nothing"
    # (a Dataset saved with no rows at all has no shard, and datasets cannot load it back)
    datasets.Dataset.from_dict({"problem": ["a"]}).filter(lambda row: False).save_to_disk(str(folder))
    assert error_of(InputSpec(str(folder))) == f"{folder}: the table has no rows"


# --- Errors: values -------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"problem": 7}', 'column "problem": expected a non-empty string, got a number (7)'),
        ('{"problem": null}', 'column "problem": expected a non-empty string, got null'),
        ('{"problem": ""}', 'column "problem": expected a non-empty string, got an empty string'),
        ('{"problem": "  \\n"}', 'column "problem": expected a non-empty string, got an empty string'),
        ('{"problem": ["a"]}', 'column "problem": expected a non-empty string, got a list'),
        (
            '{"question": "q"}',
            'column "problem": expected a non-empty string, got nothing (the row has no such key)',
        ),
        ('{"problem": "p", "answer": [1]}', 'column "answer": expected a string or a number, got a list'),
        (
            '{"problem": "p", "answer": {"v": 1}}',
            'column "answer": expected a string or a number, got an object',
        ),
        (
            '{"problem": "p", "tests": 3}',
            'column "tests": expected a string, a list or an object, got a number (3)',
        ),
        ('{"problem": "p", "source": 1}', 'column "source": expected a string, got a number (1)'),
        ('{"problem": "p", "domain": ["x"]}', 'column "domain": expected a string, got a list'),
    ],
)
def test_bad_values_name_file_line_and_column(tmp_path, line, message):
    path = tmp_path / "values.jsonl"
    path.write_text('{"problem": "fine", "answer": "1"}\n\n' + line + "\n")
    assert error_of(InputSpec(str(path))) == f"{path}:3: {message}"


@pytest.mark.parametrize(
    "value, message",
    [
        ('{"k": 1}', "expected a string or a number, got an object"),
        ("[1]", "expected a string or a number, got a list"),
        ("null", "missing id (got null)"),
        ('""', "missing id (got an empty string)"),
    ],
)
def test_bad_ids(tmp_path, value, message):
    path = tmp_path / "ids.jsonl"
    path.write_text('{"id": 1, "problem": "a"}\n{"id": ' + value + ', "problem": "b"}\n')
    assert error_of(InputSpec(str(path), id_column="id")) == f'{path}:2: column "id": {message}'


def test_id_missing_from_a_row(tmp_path):
    path = write_jsonl(tmp_path / "ids.jsonl", [{"id": 1, "problem": "a"}, {"problem": "b"}])
    assert error_of(InputSpec(str(path), id_column="id")) == (
        f'{path}:2: column "id": missing id (got nothing (the row has no such key))'
    )


def test_bad_value_in_json_array_names_the_object_line(tmp_path):
    path = tmp_path / "arr.json"
    path.write_text('[\n  {"problem": "a"},\n  {\n    "problem": null\n  }\n]\n')
    assert error_of(InputSpec(str(path))) == (
        f'{path}:3: column "problem": expected a non-empty string, got null'
    )


def test_missing_problem_column_lists_columns(tmp_path):
    path = write_jsonl(tmp_path / "cols.jsonl", [{"text": "a", "label": 1}, {"text": "b", "hint": "h"}])
    assert error_of(InputSpec(str(path))) == (
        f"{path}: no problem column (looked for problem, question, prompt, instruction, conversations, "
        "messages); the columns are: text, label, hint; pass --problem-column"
    )
    frame, _ = load_problems(InputSpec(str(path), problem_column="text"))
    assert frame["problem"].to_list() == ["a", "b"]
    assert frame["extra"].to_list() == ['{"label": 1}', '{"hint": "h"}']


@pytest.mark.parametrize(
    "option, field",
    [
        ("--problem-column", "problem_column"),
        ("--answer-column", "answer_column"),
        ("--id-column", "id_column"),
    ],
)
def test_explicit_column_not_found_names_the_option(tmp_path, option, field):
    path = write_jsonl(tmp_path / "cols.jsonl", [{"problem": "a", "answer": "1"}])
    assert error_of(InputSpec(str(path), **{field: "nope"})) == (
        f'{path}: column "nope" given by {option} not found; the columns are: problem, answer'
    )


def test_missing_problem_column_in_parquet(tmp_path):
    path = write_parquet(tmp_path / "cols.parquet", {"text": ["a"], "n": [1]})
    assert error_of(InputSpec(str(path))) == (
        f"{path}: no problem column (looked for problem, question, prompt, instruction, conversations, "
        "messages); the columns are: text, n; pass --problem-column"
    )


# --- Errors: values in tables --------------------------------------------------------


def test_parquet_problem_of_wrong_type(tmp_path):
    path = write_parquet(tmp_path / "ints.parquet", {"problem": [None, 2, 3]})
    assert error_of(InputSpec(str(path))) == (
        f'{path}: row 0, column "problem": expected a non-empty string, got null'
    )
    path = write_parquet(tmp_path / "ints.parquet", {"problem": [1, 2, 3]})
    assert error_of(InputSpec(str(path))) == (
        f'{path}: row 0, column "problem": expected a non-empty string, got a number (1)'
    )


def test_parquet_null_and_empty_problems(tmp_path):
    path = write_parquet(tmp_path / "holes.parquet", {"problem": ["a", "b", " ", None]})
    assert error_of(InputSpec(str(path))) == (
        f'{path}: row 2, column "problem": expected a non-empty string, got an empty string'
    )
    path = write_parquet(tmp_path / "holes.parquet", {"problem": ["a", None, ""]})
    assert error_of(InputSpec(str(path))) == (
        f'{path}: row 1, column "problem": expected a non-empty string, got null'
    )


def test_parquet_reports_the_first_bad_row_across_columns(tmp_path):
    path = write_parquet(
        tmp_path / "two.parquet",
        {"problem": ["a", "b", None], "answer": [None, [1], [2]]},
    )
    assert error_of(InputSpec(str(path))) == (
        f'{path}: row 1, column "answer": expected a string or a number, got a list'
    )


def test_parquet_answer_struct_and_id_errors(tmp_path):
    path = write_parquet(tmp_path / "s.parquet", {"problem": ["a", "b"], "answer": [None, {"v": 1}]})
    assert error_of(InputSpec(str(path))) == (
        f'{path}: row 1, column "answer": expected a string or a number, got an object'
    )
    path = write_parquet(tmp_path / "ids.parquet", {"problem": ["a", "b", "c"], "id": ["x", "y", ""]})
    assert error_of(InputSpec(str(path), id_column="id")) == (
        f'{path}: row 2, column "id": missing id (got an empty string)'
    )
    path = write_parquet(tmp_path / "ids.parquet", {"problem": ["a", "b"], "id": [[1], [2]]})
    assert error_of(InputSpec(str(path), id_column="id")) == (
        f'{path}: row 0, column "id": expected a string or a number, got a list'
    )


def test_datasets_folder_bad_value(tmp_path):
    import datasets

    folder = tmp_path / "bad"
    datasets.Dataset.from_dict({"question": ["a", None, "c"]}).save_to_disk(str(folder))
    assert error_of(InputSpec(str(folder))) == (
        f'{folder}: row 1, column "question": expected a non-empty string, got null'
    )


# --- Errors: duplicates -----------------------------------------------------------------


def test_duplicate_ids_name_both_lines(tmp_path):
    path = tmp_path / "dup.jsonl"
    path.write_text('{"id": 1, "problem": "a"}\n{"id": 2, "problem": "b"}\n\n{"id": "1", "problem": "c"}\n')
    assert error_of(InputSpec(str(path), id_column="id")) == (
        f'{path}:4: duplicate problem_id "1" (first seen on line 1)'
    )


def test_duplicate_problem_text_with_hash_ids(tmp_path):
    path = write_jsonl(tmp_path / "dup.jsonl", [{"problem": "a"}, {"problem": "b"}, {"problem": "a"}])
    assert error_of(InputSpec(str(path))) == (
        f'{path}:3: duplicate problem_id "{hash_id("dup", "a")}": same problem text as line 1; '
        "remove it or pass --id-column"
    )
    # with an id column, the same text under two ids is fine
    rows = [{"id": "x", "problem": "a"}, {"id": "y", "problem": "a"}]
    frame, _ = load_problems(InputSpec(str(write_jsonl(tmp_path / "ok.jsonl", rows)), id_column="id"))
    assert frame["problem_id"].to_list() == ["x", "y"]


def test_same_text_from_different_sources_is_not_a_duplicate(tmp_path):
    rows = [{"problem": "a", "source": "s1"}, {"problem": "a", "source": "s2"}]
    frame, _ = load_problems(InputSpec(str(write_jsonl(tmp_path / "two.jsonl", rows))))
    assert frame["problem_id"].to_list() == [hash_id("s1", "a"), hash_id("s2", "a")]


def test_duplicates_in_parquet_name_rows(tmp_path):
    path = write_parquet(tmp_path / "dup.parquet", {"problem": ["a", "b", "c"], "id": [5, 6, 5]})
    assert error_of(InputSpec(str(path), id_column="id")) == (
        f'{path}: row 2: duplicate problem_id "5" (first seen on row 0)'
    )
    path = write_parquet(tmp_path / "dup.parquet", {"problem": ["a", "b", "b"]})
    assert error_of(InputSpec(str(path))) == (
        f'{path}: row 2: duplicate problem_id "{hash_id("dup", "b")}": same problem text as row 1; '
        "remove it or pass --id-column"
    )


def test_duplicates_in_json_array_name_object_lines(tmp_path):
    path = tmp_path / "dup.json"
    path.write_text(
        '[\n{"id": "a", "problem": "x"},\n{"id": "b", "problem": "y"},\n{"id": "a", "problem": "z"}\n]'
    )
    assert error_of(InputSpec(str(path), id_column="id")) == (
        f'{path}:4: duplicate problem_id "a" (first seen on line 2)'
    )


# --- Errors: paths ------------------------------------------------------------------------


def test_missing_file_with_extension(tmp_path):
    path = tmp_path / "nope.jsonl"
    assert error_of(InputSpec(str(path))) == f"{path}: no such file"
    assert error_of(InputSpec("data/problems.parquet")) == "data/problems.parquet: no such file"


def test_missing_path_that_is_not_a_hub_name(tmp_path):
    path = tmp_path / "nothing" / "here"
    assert error_of(InputSpec(str(path))) == f"{path}: no such file or folder"


def test_unsupported_extension(tmp_path):
    path = tmp_path / "problems.csv"
    path.write_text("problem\n1+1\n")
    assert error_of(InputSpec(str(path))) == (
        f'{path}: unsupported file type ".csv"; supported inputs: .jsonl, .json, .parquet, '
        "a datasets save_to_disk folder, or a Hub dataset name"
    )


def test_folder_that_is_not_a_datasets_folder(tmp_path):
    (tmp_path / "plain").mkdir()
    assert error_of(InputSpec(str(tmp_path / "plain"))).startswith(
        f"{tmp_path / 'plain'}: a folder, but not one written by datasets' save_to_disk"
    )


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "junk.parquet"
    path.write_bytes(b"this is not parquet at all")
    assert error_of(InputSpec(str(path))).startswith(f"{path}: not a readable Parquet file (")


def test_uppercase_extension(tmp_path):
    path = write_jsonl(tmp_path / "UPPER.JSONL", [{"problem": "a"}])
    frame, info = load_problems(InputSpec(str(path)))
    assert info["kind"] == "jsonl"
    assert frame["source"][0] == "UPPER"


# --- The Hub --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["openai/gsm8k", "gsm8k", "HuggingFaceH4/MATH-500"])
def test_hub_name_fails_offline_with_a_clean_message(name, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # so that no local folder shadows the name
    started = time.monotonic()
    message = error_of(InputSpec(name, split="test"))
    assert time.monotonic() - started < 60
    assert message.startswith(f"{name}: could not load the Hub dataset (")
    assert message.endswith("); pass a local file or check the name")
    assert "Traceback" not in message
    assert len(message) < 300


# --- Import cost ----------------------------------------------------------------------------


def test_import_does_not_load_heavy_modules():
    code = (
        "import curate.inputs, sys; "
        "heavy = [m for m in ('datasets', 'pyarrow', 'polars', 'pandas') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
