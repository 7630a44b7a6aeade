"""Read the problem set that `curate generate` works on.

`load_problems(InputSpec(path=...))` accepts

* a `.jsonl` file: one JSON object per line; blank lines are skipped,
* a `.json` file: a list of objects, or an object with exactly one list-valued key
  such as `{"data": [...]}`,
* a `.parquet` file,
* a folder written by `datasets`' `save_to_disk` (a Dataset, or a DatasetDict from
  which `split` is taken),
* a Hugging Face Hub dataset name (`name` or `owner/name`) when no such path exists,
  loaded with `datasets.load_dataset(name, split=split)`,

and returns one polars DataFrame with the columns of `OUTPUT_COLUMNS`, all strings:

* `problem_id`: the `id_column` value (str() of it), by default the `problem_id` or
  `id` column when there is one; without an id column, the first 16 hex digits of
  sha256(source + "\\n" + problem),
* `source`, `domain`: `--source` / `--domain` when given, else the row's own `source` /
  `domain` column when present and not null or empty, else the file stem (the Hub
  name, the folder name) and "math",
* `problem`: the problem text as is; without a problem column, the first user turn of
  an OpenAI `messages` or a ShareGPT `conversations` column (a system turn is skipped;
  curate.formats reads the turns),
* `reference_answer` (nullable): the answer column's value as a string; numbers go
  through str() (18 -> "18"). A GSM8K-style answer, whose last line starts with
  `####`, is reduced to the text after `####`, stripped ("...\\n#### 18" -> "18",
  "#### 1,000" -> "1,000"); a worked `solution` gives its last `\\boxed{}`
  (`reference_answer(value, column)`, which `curate filter` uses too),
* `tests` (nullable): a `tests` column; a string is kept as is, a list or an object
  is JSON-encoded,
* `extra`: a JSON object of the row's remaining columns (`{}` when none).

Everything is validated before a DataFrame is built, and every problem is a
`CurateError` with a one-line message that says where it is: `FILE:LINE:COL: ...`
for JSON syntax, `FILE:LINE: column "X": ...` for a bad value in a JSON file, and
`FILE: row N, column "X": ...` for Parquet and datasets tables (N counts from 0, as in
`dataset[N]`). With `limit`, only the first `limit` rows are read and validated.

The module imports in a few milliseconds: polars, pyarrow and datasets are imported
by the functions that need them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curate.errors import CurateError
from curate.options import opt
from curate.parsing import last_boxed
from curate.store import FILE_EXTENSION, is_hub_name, sha256_files

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

OUTPUT_COLUMNS = ("problem_id", "source", "domain", "problem", "reference_answer", "tests", "extra")
PROBLEM_COLUMNS = ("problem", "question", "prompt", "instruction")
CHAT_COLUMNS = ("conversations", "messages")  # without a problem column: the first user turn is the problem
ANSWER_COLUMNS = ("reference_answer", "answer", "final_answer", "solution", "ground_truth_solution")  # reference first
SUPPORTED = ".jsonl, .json, .parquet, a datasets save_to_disk folder, or a Hub dataset name"

_JSON_WHITESPACE = re.compile(r"[ \t\n\r]*")
_MISSING = object()  # a key that a JSON record does not have
# Encodes extra and tests; `default=str` covers what Arrow hands back (dates, decimals, bytes).
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)


@dataclass
class InputSpec:
    """Where the problems come from and how their columns map onto ours."""

    path: str = opt(help="Problems: .jsonl, .json, .parquet, a datasets folder, or a Hub dataset name.",
                    name="input", cli="--input")
    split: str = opt("train", "Split of a Hub dataset or DatasetDict folder.")
    problem_column: str | None = opt(None, "Default: problem, question, prompt or instruction, else the first "
                                           "user turn of conversations or messages.")
    answer_column: str | None = opt(None, "Reference answers. Default: reference_answer, answer, final_answer, "
                                          "solution or ground_truth_solution (a solution: its last \\boxed{}).")
    id_column: str | None = opt(None, "Stable problem ids. Default: a problem_id or id column, else a hash of "
                                      "source + problem text.")
    limit: int | None = opt(None, "Use only the first N problems.")
    domain: str | None = opt(None, "Domain for every row (default: the input's `domain` column, else math).")
    source: str | None = opt(None, "Source name for every row (default: the input's `source` column, else its name).")


def load_problems(spec: InputSpec) -> tuple[pl.DataFrame, dict]:
    """Read, validate and normalise the problems `spec` names.

    Returns the DataFrame (columns `OUTPUT_COLUMNS`) and an info dict: path, kind
    ("jsonl", "json", "parquet", "datasets" or "hub"), sha256 (of the file's bytes, of
    a folder's files in sorted order, or the Hub dataset's fingerprint), rows, and the
    problem, answer and id columns used."""
    if spec.limit is not None and spec.limit <= 0:
        raise CurateError(f"--limit must be a positive number, got {spec.limit}")
    kind = _input_kind(spec.path)
    if kind in ("jsonl", "json"):
        read = _read_jsonl if kind == "jsonl" else _read_json
        records, lines = read(spec.path, spec.limit)
        locator = _Locator(spec.path, lines)
        plan = _plan(_ordered_keys(records), spec)
        _add_chat_problems(records, plan, locator)
        _validate_records(records, plan, locator)
        sha256 = sha256_files([Path(spec.path)])
    else:
        table, sha256 = _read_table(kind, spec)
        if spec.limit is not None:
            table = table.slice(0, spec.limit)
        if table.num_rows == 0:
            raise CurateError(f"{spec.path}: the table has no rows")
        locator = _Locator(spec.path, None)
        plan = _plan(table.column_names, spec)
        if plan.chat:
            records = table.to_pylist()
            _add_chat_problems(records, plan, locator)
            _validate_records(records, plan, locator)
        else:
            _validate_table(table, plan, locator)
            records = table.to_pylist()
    frame = _build_frame(records, plan, locator)
    info = {
        "path": spec.path,
        "kind": kind,
        "sha256": sha256,
        "rows": frame.height,
        "problem_column": plan.chat or plan.problem,
        "answer_column": plan.answer,
        "id_column": plan.id,
    }
    return frame, info


# --- Where the input is -----------------------------------------------------------


def _input_kind(path: str) -> str:
    """The kind of input `path` names, or a CurateError when it names nothing we read."""
    location = Path(path)
    if location.is_dir():
        if not any((location / name).is_file() for name in ("dataset_dict.json", "state.json")):
            raise CurateError(
                f"{path}: a folder, but not one written by datasets' save_to_disk "
                f"(no dataset_dict.json or state.json); supported inputs: {SUPPORTED}"
            )
        return "datasets"
    if location.is_file():
        suffix = location.suffix.lower()
        if suffix not in (".jsonl", ".json", ".parquet"):
            raise CurateError(
                f'{path}: unsupported file type "{location.suffix}"; supported inputs: {SUPPORTED}'
            )
        if location.stat().st_size == 0:
            raise CurateError(f"{path}: the file is empty")
        return suffix[1:]
    if is_hub_name(path):
        return "hub"
    if FILE_EXTENSION.search(path):
        raise CurateError(f"{path}: no such file")
    raise CurateError(f"{path}: no such file or folder")


# --- JSON and JSONL ---------------------------------------------------------------


def _read_jsonl(path: str, limit: int | None) -> tuple[list[dict], list[int]]:
    """The first `limit` objects of a JSONL file and the 1-based line of each."""
    records: list[dict] = []
    lines: list[int] = []
    with open(path, "rb") as stream:
        for number, raw in enumerate(stream, start=1):
            text = _decode(raw, path, first_line=number)
            if number == 1:
                text = text.removeprefix("\ufeff")
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as error:
                raise CurateError(f"{path}:{number}:{error.colno}: malformed JSON: {error.msg}") from None
            if not isinstance(value, dict):
                column = len(text) - len(text.lstrip()) + 1
                raise CurateError(
                    f"{path}:{number}:{column}: expected a JSON object, got {_describe(value)}"
                )
            records.append(value)
            lines.append(number)
            if len(records) == limit:
                break
    if not records:
        raise CurateError(f"{path}: the file is empty (only blank lines)")
    return records, lines


def _read_json(path: str, limit: int | None) -> tuple[list[dict], list[int]]:
    """The first `limit` objects of a JSON file's list and the 1-based line where each starts."""
    text = _decode(Path(path).read_bytes(), path, first_line=1).removeprefix("\ufeff")
    if not text.strip():
        raise CurateError(f"{path}: the file is empty (only blank lines)")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise CurateError(f"{path}:{error.lineno}:{error.colno}: malformed JSON: {error.msg}") from None
    key = _list_key(document, path)
    items = (document if key is None else document[key])[:limit]
    if not items:
        raise CurateError(f"{path}: no problems (the list is empty)")
    lines = []
    line, previous = 1, 0
    for item, offset in zip(items, _item_offsets(text, key)):
        line += text.count("\n", previous, offset)
        previous = offset
        if not isinstance(item, dict):
            column = offset - text.rfind("\n", 0, offset)
            raise CurateError(f"{path}:{line}:{column}: expected a JSON object, got {_describe(item)}")
        lines.append(line)
    return items, lines


def read_json_frame(path: str) -> pl.DataFrame:
    """A JSON file's list of objects as a DataFrame (errors as `_read_json` gives them)."""
    import polars as pl

    records, _ = _read_json(path, None)
    try:
        return pl.from_dicts(records, infer_schema_length=None)
    except Exception as error:  # noqa: BLE001 - a column whose values make no one type (polars raises many kinds)
        raise CurateError(f"{path}: unreadable as a table ({_reason(error)})") from None


def _decode(data: bytes, path: str, first_line: int) -> str:
    """`data` as UTF-8 text; bad bytes are an error at their line and column."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = first_line + data.count(b"\n", 0, error.start)
        line_start = data.rfind(b"\n", 0, error.start) + 1
        column = len(data[line_start : error.start].decode("utf-8")) + 1
        raise CurateError(
            f"{path}:{line}:{column}: not valid UTF-8 (byte 0x{data[error.start]:02x}); "
            "save the file as UTF-8"
        ) from None


def _list_key(document: Any, path: str) -> str | None:
    """None when `document` is the list of problems, else the key of its one list."""
    if isinstance(document, list):
        return None
    if isinstance(document, dict):
        keys = [key for key, value in document.items() if isinstance(value, list)]
        if len(keys) == 1:
            return keys[0]
        found = f"an object with {len(keys)} list-valued keys"
    else:
        found = _describe(document)
    raise CurateError(
        f"{path}: expected a list of objects or an object with one list-valued key "
        f'like {{"data": [...]}}, got {found}'
    )


def _item_offsets(text: str, key: str | None):
    """Yield the offset in `text` (valid JSON) where each item of the problem list starts."""
    decoder = json.JSONDecoder()
    at = _skip_whitespace(text, 0)
    if key is not None:  # walk the object's members to the list under `key`
        at = _skip_whitespace(text, at + 1)
        while True:
            name, at = decoder.raw_decode(text, at)
            at = _skip_whitespace(text, _skip_whitespace(text, at) + 1)  # past ":"
            if name == key and text[at] == "[":
                break
            _, at = decoder.raw_decode(text, at)
            at = _skip_whitespace(text, _skip_whitespace(text, at) + 1)  # past ","
    at = _skip_whitespace(text, at + 1)  # past "["
    while text[at] != "]":
        yield at
        _, at = decoder.raw_decode(text, at)
        at = _skip_whitespace(text, at)
        if text[at] == ",":
            at = _skip_whitespace(text, at + 1)


def _skip_whitespace(text: str, at: int) -> int:
    """The offset of the first non-whitespace character at or after `at`."""
    return _JSON_WHITESPACE.match(text, at).end()


def _ordered_keys(records: list[dict]) -> list[str]:
    """Every key of the records, in the order first seen."""
    keys: dict[str, None] = {}
    for record in records:
        for key in record:
            if key not in keys:
                keys[key] = None
    return list(keys)


# --- Parquet, datasets folders and the Hub ------------------------------------------


def _read_table(kind: str, spec: InputSpec) -> tuple[pa.Table, str | None]:
    """The Arrow table of a Parquet file, a datasets folder or a Hub dataset, and its sha256
    (the Hub dataset's fingerprint)."""
    from curate.store import open_table

    table = open_table(spec.path, split=spec.split)
    try:
        data = table.arrow()
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ...
        raise CurateError(f"{spec.path}: not a readable Parquet file ({_reason(error)})") from None
    return data, table.fingerprint()


def load_datasets_folder(path: str | os.PathLike, split: str = "train", shown: str | None = None):
    """The `datasets.Dataset` in a save_to_disk folder (the `split` of a DatasetDict);
    any failure is one line naming `shown` (default: the path)."""
    import datasets

    shown = shown or str(path)
    try:
        dataset = datasets.load_from_disk(str(path))
    except Exception as error:
        raise CurateError(f"{shown}: could not load the datasets folder ({_reason(error)})") from None
    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise CurateError(f'{shown}: no split "{split}"; the splits are: {", ".join(dataset)}; pass --split')
        dataset = dataset[split]
    return dataset


def read_hub(name: str, split: str | None, config: str | None = None) -> tuple[pa.Table, str | None]:
    """A Hub dataset's `split` (None: its first split) and its fingerprint; any failure
    is one line."""
    try:
        import datasets

        dataset = datasets.load_dataset(name, config, split=split)
        if split is None:  # a DatasetDict
            dataset = dataset[next(iter(dataset))]
    except Exception as error:  # offline, unknown name, bad split, no network, ...
        raise CurateError(
            f"{name}: could not load the Hub dataset ({_reason(error)}); pass a local file or check the name"
        ) from None
    return dataset.with_format("arrow")[:], getattr(dataset, "_fingerprint", None)


def _reason(error: Exception) -> str:
    """A short, one-line account of `error`."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."


# --- Which column feeds which output -------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """The input columns that feed the output, and the defaults for source and domain."""

    problem: str
    answer: str | None
    id: str | None
    tests: str | None  # "tests" when the input has it
    source: str | None  # "source" when the input has it and --source is not given
    domain: str | None  # "domain" likewise
    default_source: str
    default_domain: str
    chat: str | None = None  # the messages / conversations column whose first user turn is the problem

    def used(self) -> set[str]:
        """The input columns that do not go into `extra`."""
        columns = (self.problem, self.answer, self.id, self.tests, self.source, self.domain, self.chat)
        return {column for column in columns if column is not None}

    def checks(self) -> list[tuple[str, Callable[[Any], str | None]]]:
        """(column, check) for every input column we read; a check returns an error or None."""
        checks = [(self.problem, _problem_error), (self.answer, _answer_error), (self.id, _id_error)]
        checks += [(self.tests, _tests_error), (self.source, _label_error), (self.domain, _label_error)]
        return [(column, check) for column, check in checks if column is not None]


ID_COLUMNS = ("problem_id", "id")  # an input's own problem ids, taken without --id-column


def _plan(available: list[str], spec: InputSpec) -> _Plan:
    """Resolve the spec's columns against the input's columns."""
    present = set(available)
    problem = _column(spec.problem_column, "--problem-column", PROBLEM_COLUMNS, available, spec.path)
    chat = next((name for name in CHAT_COLUMNS if name in present), None) if problem is None else None
    if problem is None and chat is None:
        raise CurateError(
            f"{spec.path}: no problem column (looked for {', '.join(PROBLEM_COLUMNS + CHAT_COLUMNS)}); "
            f"the columns are: {', '.join(available)}; pass --problem-column"
        )
    path = Path(spec.path)
    default_source = spec.path if not path.exists() else (path.name if path.is_dir() else path.stem)
    return _Plan(
        problem=problem or "problem",
        answer=_column(spec.answer_column, "--answer-column", ANSWER_COLUMNS, available, spec.path),
        id=_column(spec.id_column, "--id-column", ID_COLUMNS, available, spec.path),
        tests="tests" if "tests" in present else None,
        source="source" if "source" in present and spec.source is None else None,
        domain="domain" if "domain" in present and spec.domain is None else None,
        default_source=spec.source or default_source,
        default_domain=spec.domain or "math",
        chat=chat,
    )


def _add_chat_problems(records: list[dict], plan: _Plan, locator: _Locator) -> None:
    """Give each record of a chat input its problem: the first user turn of `plan.chat`."""
    if not plan.chat:
        return
    from curate.formats import first_user_turn

    for index, record in enumerate(records):
        problem = first_user_turn(record.get(plan.chat), plan.chat)
        if not (problem and problem.strip()):
            raise CurateError(f"{locator.cell(index, plan.chat)}: no user turn with text (the problem is the "
                              "first user turn; pass --problem-column)")
        record[plan.problem] = problem


def _column(
    given: str | None, option: str, candidates: tuple[str, ...], available: list[str], path: str
) -> str | None:
    """The column named by `option` (an error if absent), else the first candidate present."""
    if given is not None:
        if given not in available:
            raise CurateError(
                f'{path}: column "{given}" given by {option} not found; '
                f'the columns are: {", ".join(available)}'
            )
        return given
    return next((name for name in candidates if name in available), None)


# --- Validation -------------------------------------------------------------------

_SCALARS = (str, int, float)  # bool is an int


def _problem_error(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return None
    return f"expected a non-empty string, got {_describe(value)}"


def _answer_error(value: Any) -> str | None:
    if value is None or value is _MISSING or isinstance(value, _SCALARS):
        return None
    return f"expected a string or a number, got {_describe(value)}"


def _id_error(value: Any) -> str | None:
    if isinstance(value, _SCALARS) and str(value).strip():
        return None
    if value is None or value is _MISSING or isinstance(value, str):
        return f"missing id (got {_describe(value)})"
    return f"expected a string or a number, got {_describe(value)}"


def _tests_error(value: Any) -> str | None:
    if value is None or value is _MISSING or isinstance(value, (str, list, dict)):
        return None
    return f"expected a string, a list or an object, got {_describe(value)}"


def _label_error(value: Any) -> str | None:
    if value is None or value is _MISSING or isinstance(value, str):
        return None
    return f"expected a string, got {_describe(value)}"


def _describe(value: Any) -> str:
    """What `value` is, for messages: "null", "a number (42)", "a list", ..."""
    if value is _MISSING:
        return "nothing (the row has no such key)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({json.dumps(value)})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return "a string" if value.strip() else "an empty string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


@dataclass(frozen=True)
class _Locator:
    """Names rows in messages: by 1-based line for JSON files, by 0-based row for tables."""

    path: str
    lines: list[int] | None

    def row(self, index: int) -> str:
        return f"line {self.lines[index]}" if self.lines is not None else f"row {index}"

    def at(self, index: int) -> str:
        """The prefix of a message about a whole row."""
        return f"{self.path}:{self.lines[index]}" if self.lines is not None else f"{self.path}: row {index}"

    def cell(self, index: int, column: str) -> str:
        """The prefix of a message about one value."""
        if self.lines is not None:
            return f'{self.path}:{self.lines[index]}: column "{column}"'
        return f'{self.path}: row {index}, column "{column}"'


def _validate_records(records: list[dict], plan: _Plan, locator: _Locator) -> None:
    """Check every value of JSON records that we read; raise at the first bad one."""
    checks = plan.checks()
    for index, record in enumerate(records):
        for column, check in checks:
            error = check(record.get(column, _MISSING))
            if error:
                raise CurateError(f"{locator.cell(index, column)}: {error}")


def _validate_table(table: pa.Table, plan: _Plan, locator: _Locator) -> None:
    """Check a table's columns vectorised; raise at the first bad row (the leftmost column on ties)."""
    bad = []
    for column, check in plan.checks():
        row = _first_bad_row(table.column(column), check)
        if row is not None:
            bad.append((row, table.column_names.index(column), column, check))
    if bad:
        row, _, column, check = min(bad, key=lambda b: b[:2])  # a column read twice (--answer-column = problem)
        error = check(table.column(column)[row].as_py())
        raise CurateError(f"{locator.cell(row, column)}: {error}")


def _first_bad_row(values: pa.ChunkedArray, check: Callable[[Any], str | None]) -> int | None:
    """The first row `check` rejects. Arrow columns are typed, so one sample decides for
    every null, for every blank string, and for every other non-null value."""
    import pyarrow as pa
    import pyarrow.compute as pc

    masks = []
    if values.null_count and check(None):
        masks.append(pc.is_null(values))
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        if check(""):
            masks.append(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(values)), 0))
    elif values.null_count < len(values):
        first = pc.index(pc.is_valid(values), True).as_py()
        if check(values[first].as_py()):
            masks.append(pc.is_valid(values))
    rows = [pc.index(mask, True).as_py() for mask in masks]
    return min((row for row in rows if row >= 0), default=None)


# --- The output -------------------------------------------------------------------


def _build_frame(records: list[dict], plan: _Plan, locator: _Locator) -> pl.DataFrame:
    """The output DataFrame of validated records; duplicate ids are an error."""
    import polars as pl

    columns: dict[str, list] = {name: [] for name in OUTPUT_COLUMNS}
    used = plan.used()
    first_seen: dict[str, int] = {}
    for index, record in enumerate(records):
        problem = record[plan.problem]
        source = _label(record, plan.source) or plan.default_source
        problem_id = str(record[plan.id]) if plan.id else _hash_id(source, problem)
        if problem_id in first_seen:
            raise CurateError(_duplicate_message(problem_id, index, first_seen[problem_id], plan, locator))
        first_seen[problem_id] = index
        columns["problem_id"].append(problem_id)
        columns["source"].append(source)
        columns["domain"].append(_label(record, plan.domain) or plan.default_domain)
        columns["problem"].append(problem)
        answer = record.get(plan.answer) if plan.answer else None
        columns["reference_answer"].append(reference_answer(answer, plan.answer))
        columns["tests"].append(_tests_json(record.get(plan.tests)) if plan.tests else None)
        extra = {key: value for key, value in record.items() if key not in used}
        columns["extra"].append(_ENCODER.encode(extra))
    return pl.DataFrame(columns, schema={name: pl.String for name in OUTPUT_COLUMNS})


def _label(record: dict, column: str | None) -> str | None:
    """The row's source or domain, when it has a non-empty one."""
    value = record.get(column) if column else None
    return value if value and value.strip() else None


def _hash_id(source: str, problem: str) -> str:
    """The id of a problem without an id column: 16 hex digits of sha256(source \\n problem)."""
    return hashlib.sha256(f"{source}\n{problem}".encode()).hexdigest()[:16]


def _duplicate_message(problem_id: str, index: int, first: int, plan: _Plan, locator: _Locator) -> str:
    if plan.id:
        where = locator.row(first)
        return f'{locator.at(index)}: duplicate problem_id "{problem_id}" (first seen on {where})'
    return (
        f'{locator.at(index)}: duplicate problem_id "{problem_id}": same problem text as '
        f"{locator.row(first)}; remove it or pass --id-column"
    )


def reference_answer(value: Any, column: str | None = None) -> str | None:
    """The answer as a string; a GSM8K answer ending in a `#### N` line becomes "N"; a
    `solution` column's worked solution becomes its last `\\boxed{}` (None without one)."""
    if value is None:
        return None
    if not isinstance(value, str):
        return str(value)
    last_line = value.rstrip().rpartition("\n")[2]
    if last_line.startswith("####"):
        return last_line[4:].strip()
    if column and column.endswith("solution"):  # solution, ground_truth_solution: a worked solution
        return last_boxed(value)
    return value


def _tests_json(value: Any) -> str | None:
    """A tests value as JSON text; a string is taken to be JSON already."""
    if value is None or isinstance(value, str):
        return value
    return _ENCODER.encode(value)
