"""The one vLLM engine the single-process benchmarks share: `cpu_llm(model)` builds
`vllm.LLM` with the CPU settings curate uses (fp32, eager, compilation off, prefix
caching, a 2 GiB KV cache), the embedded SmolLM2-135M-Instruct when `model` is None."""

from __future__ import annotations


def cpu_llm(model: str | None = None):
    """(the engine, the model path it loaded)."""
    from vllm import LLM

    from curate.embedded import embedded_model_dir

    path = model or str(embedded_model_dir())
    llm = LLM(model=path, dtype="float32", enforce_eager=True, compilation_config={"mode": 0}, seed=0,
              enable_prefix_caching=True, kv_cache_memory_bytes=2 << 30, enable_chunked_prefill=False)
    return llm, path
