"""Every bad input to `curate generate`: one line on stderr naming the file/line/column
or the option, exit code 2, no traceback, and nothing written."""

import json

from helpers import curate


def refuse(tmp_path, *args):
    out = tmp_path / "out"
    r = curate("generate", "--out", out, *args, check=False, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not out.exists(), "nothing may be written on bad input"
    return lines[0].removeprefix("error: ")


def write(path, text: str | bytes):
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def test_malformed_json_names_line_and_column(tmp_path):
    f = write(tmp_path / "p.jsonl", '{"problem": "a"}\n{"problem": "b",, }\n')
    assert refuse(tmp_path, "--input", f).startswith(f"{f}:2:17: malformed JSON")


def test_malformed_json_array(tmp_path):
    f = write(tmp_path / "p.json", '[\n  {"problem": "a"},\n  {"problem": }\n]')
    assert refuse(tmp_path, "--input", f).startswith(f"{f}:3:15: malformed JSON")


def test_wrong_type_names_line_and_column(tmp_path):
    f = write(tmp_path / "p.jsonl", '{"problem": "a"}\n{"problem": 7}\n')
    assert refuse(tmp_path, "--input", f) == f'{f}:2: column "problem": expected a non-empty string, got a number (7)'


def test_missing_problem_column(tmp_path):
    f = write(tmp_path / "p.jsonl", '{"text": "a"}\n')
    msg = refuse(tmp_path, "--input", f)
    assert msg.startswith(f"{f}: no problem column") and "pass --problem-column" in msg


def test_explicit_column_absent_names_the_option(tmp_path):
    f = write(tmp_path / "p.jsonl", '{"problem": "a"}\n')
    assert "--answer-column" in refuse(tmp_path, "--input", f, "--answer-column", "gold")


def test_empty_file(tmp_path):
    f = write(tmp_path / "p.jsonl", "")
    assert refuse(tmp_path, "--input", f) == f"{f}: the file is empty"


def test_non_utf8(tmp_path):
    f = write(tmp_path / "p.jsonl", b'{"problem": "ok"}\n{"problem": "caf\xe9"}\n')
    assert refuse(tmp_path, "--input", f).startswith(f"{f}:2:17: not valid UTF-8")


def test_duplicate_ids_name_both_lines(tmp_path):
    rows = [{"id": "a", "problem": "x"}, {"id": "b", "problem": "y"}, {"id": "a", "problem": "z"}]
    f = write(tmp_path / "p.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    assert refuse(tmp_path, "--input", f, "--id-column", "id") == (
        f'{f}:3: duplicate problem_id "a" (first seen on line 1)')


def test_an_id_column_is_the_problem_id_without_the_option(tmp_path):
    rows = [{"id": "q-1", "problem": "What is 2 + 3?"}, {"id": "q-2", "problem": "What is 4 + 4?"}]
    f = write(tmp_path / "p.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    r = curate("generate", "--input", f, "--out", tmp_path / "out", "--dry-run")
    assert "prompt · q-1" in r.stdout and "prompt · q-2" in r.stdout
    f = write(tmp_path / "dup.jsonl", "".join(json.dumps(r) + "\n" for r in [*rows, {"id": "q-1", "problem": "z"}]))
    assert refuse(tmp_path, "--input", f) == f'{f}:3: duplicate problem_id "q-1" (first seen on line 1)'


def test_missing_file_and_unknown_type(tmp_path):
    assert refuse(tmp_path, "--input", tmp_path / "nope.jsonl") == f"{tmp_path / 'nope.jsonl'}: no such file"
    f = write(tmp_path / "p.csv", "problem\nx\n")
    assert "unsupported file type" in refuse(tmp_path, "--input", f)


def test_hub_name_offline_is_a_clean_error(tmp_path):
    msg = refuse(tmp_path, "--input", "no-such-owner/no-such-dataset")
    assert msg.startswith("no-such-owner/no-such-dataset: could not load the Hub dataset")


def test_bad_options(tmp_path, problems_file):
    assert "unknown template 'nope'" in refuse(tmp_path, "--input", problems_file, "--template", "nope")
    assert "--temperature 0 gives identical samples" in refuse(tmp_path, "--input", problems_file, "-n", "4",
                                                               "--temperature", "0")
    assert refuse(tmp_path, "--input", problems_file, "--top-p", "0") == "--top-p must be in (0, 1]"
    assert refuse(tmp_path, "--input", problems_file, "--max-tokens", "0") == "--max-tokens must be at least 1"
    assert "--base-url is required" in refuse(tmp_path, "--input", problems_file, "--backend", "openai", "--model", "m")
    assert refuse(tmp_path, "--input", problems_file, "--limit", "0").startswith("--limit must be a positive number")


def test_usage_errors_are_one_line_too(tmp_path, problems_file):
    """What click itself refuses (a value of the wrong type or choice, an unknown option)."""
    assert refuse(tmp_path, "--input", problems_file, "--limit", "abc") == (
        "Invalid value for '--limit': 'abc' is not a valid integer. (see `curate generate --help`)")
    assert "No such option '--nope'" in refuse(tmp_path, "--input", problems_file, "--nope")
    assert "'--backend': 'x' is not one of" in refuse(tmp_path, "--input", problems_file, "--backend", "x")


def test_template_error_names_the_row(tmp_path, problems_file):
    t = write(tmp_path / "t.jinja", "{{ problem }} {{ hint }}")
    msg = refuse(tmp_path, "--input", problems_file, "--template", t)
    assert msg.startswith(f"{problems_file}: row 1 (problem_id ") and "'hint' is undefined" in msg


def test_fewshot_without_examples_and_bad_examples(tmp_path, problems_file):
    assert "pass --examples FILE" in refuse(tmp_path, "--input", problems_file, "--template", "cold_start_fewshot")
    bad = write(tmp_path / "ex.jsonl", '{"problem": "a"\n')
    assert refuse(tmp_path, "--input", problems_file, "--template", "cold_start_fewshot",
                  "--examples", bad).startswith(f"{bad}:1:")


def test_dry_run_prints_plan_and_writes_nothing(tmp_path, problems_file):
    out = tmp_path / "out"
    r = curate("generate", "--input", problems_file, "--out", out, "-n", "4", "--template", "r1_zero", "--dry-run")
    assert "8 problems × 4 samples = 32 samples" in r.stdout
    assert "A conversation between User and Assistant." in r.stdout and "dry run: no model loaded" in r.stdout
    assert not out.exists()
