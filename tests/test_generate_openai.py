"""`curate generate --backend openai` against a real vLLM OpenAI-compatible server on 127.0.0.1."""

import json

import pytest

from helpers import curate, rows

pytestmark = pytest.mark.slow

SECRET = "sk-curate-test-0123456789"


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


def test_raw_text_template_uses_the_completions_endpoint(vllm_url, problems_file, tmp_path):
    out = tmp_path / "raw"
    curate("generate", "--input", problems_file, "--out", out, "--backend", "openai", "--base-url", vllm_url,
           "--model", "tiny", "--template", "r1_zero", "--limit", "3", "--max-tokens", "12", "--no-progress")
    df = rows(out)
    assert df.height == 3 and df["prompt"][0].endswith(". Assistant:")
    assert (df["completion_tokens"] > 0).all()
