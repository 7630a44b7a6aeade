"""`curate generate --backend openai` against a real vLLM OpenAI-compatible server on 127.0.0.1."""

import json

import pytest

from helpers import curate, rows
from servers import Reply, ScriptedServer, chat_response

SECRET = "sk-curate-test-0123456789"


@pytest.mark.slow
def test_generate_through_a_vllm_server_with_n_and_concurrency(vllm_url, problems_file, tmp_path):
    out = tmp_path / "run"
    args = ["generate", "--input", problems_file, "--out", out, "--backend", "openai", "--base-url", vllm_url,
            "--model", "tiny", "-n", "3", "--concurrency", "4", "--max-tokens", "16", "--no-progress",
            "--shard-rows", "5"]
    r = curate(*args, extra_env={"OPENAI_API_KEY": SECRET})
    df = rows(out)
    assert df.height == 24 and df.select("problem_id", "sample_index").is_unique().all()
    assert sorted(set(df["sample_index"].to_list())) == [0, 1, 2]
    assert set(df["finish_reason"].to_list()) <= {"stop", "length"}
    assert df["backend"].unique().to_list() == ["openai"] and df["model"].unique().to_list() == ["tiny"]
    assert (df["prompt_tokens"] > 0).all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["engine"]["base_url"] == vllm_url and manifest["status"] == "complete"
    # the key is sent, never written
    for path in out.iterdir():
        assert SECRET not in path.read_bytes().decode("latin-1"), path
    assert SECRET not in r.stdout + r.stderr

    again = curate(*args, extra_env={"OPENAI_API_KEY": SECRET})
    assert "0 this session" in again.stdout and rows(out).equals(df)


@pytest.mark.slow
def test_raw_text_template_uses_the_completions_endpoint(vllm_url, problems_file, tmp_path):
    out = tmp_path / "raw"
    curate("generate", "--input", problems_file, "--out", out, "--backend", "openai", "--base-url", vllm_url,
           "--model", "tiny", "--template", "r1_zero", "--limit", "3", "--max-tokens", "12", "--no-progress")
    df = rows(out)
    assert df.height == 3 and df["prompt"][0].endswith(". Assistant:")
    assert (df["completion_tokens"] > 0).all()


def test_a_server_that_stays_down_fails_cleanly_and_the_rerun_finishes(problems_file, tmp_path):
    """Transient failures that outlast the retries are not written as results: the run
    exits 1 with one line, keeps what finished, and the same command later completes it."""
    down = {"on": True}

    def respond(call):
        if down["on"] and "Janet" in call.prompt:
            return Reply(503, "overloaded")
        return Reply(body=chat_response([f"<think>ok</think> \\boxed{{{call.body.get('seed')}}}"] * call.body["n"]))

    out = tmp_path / "run"
    args = ["generate", "--input", problems_file, "--out", out, "--backend", "openai", "--model", "m",
            "-n", "2", "--concurrency", "1", "--max-retries", "1", "--no-progress"]
    with ScriptedServer(respond) as server:
        failed = curate(*args, "--base-url", server.base_url, check=False)
        assert failed.returncode == 1
        assert [line for line in failed.stderr.splitlines() if line.startswith("error:")] == [failed.stderr.strip()]
        assert "re-run the same command to retry" in failed.stderr and "Traceback" not in failed.stderr
        assert json.loads((out / "manifest.json").read_text())["status"] == "failed"
        kept = rows(out) if list(out.glob("part-*.parquet")) else None
        assert kept is None or not kept["problem"].str.contains("Janet").any()

        down["on"] = False
        curate(*args, "--base-url", server.base_url)
    df = rows(out)
    assert df.height == 16 and df.select("problem_id", "sample_index").is_unique().all()
    assert df["final_answer"].null_count() == 0 and df["reasoning"].to_list() == ["ok"] * 16
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
