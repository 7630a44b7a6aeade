"""Generation backends: `vllm` (offline engine), `openai` (any OpenAI-compatible
server), `transformers` (fallback). Each is imported only when it is used, so the CLI
starts without torch or vLLM."""

from __future__ import annotations

import importlib
import importlib.util

from curate.backends.base import Backend, Sampling
from curate.errors import CurateError

BACKENDS = {
    "vllm": ("curate.backends.vllm", "VLLMBackend", "vllm", "pip install 'curate[cpu]' (CPU) or 'curate[gpu]'"),
    "openai": ("curate.backends.openai", "OpenAIBackend", "httpx", "pip install httpx"),
    "transformers": ("curate.backends.transformers", "TransformersBackend", "transformers", "pip install 'curate[hf]'"),
}


def backend_class(name: str) -> type[Backend]:
    if name not in BACKENDS:
        raise CurateError(f"--backend: unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module, cls, needs, install = BACKENDS[name]
    if importlib.util.find_spec(needs) is None:
        raise CurateError(f"--backend {name} needs the `{needs}` package: {install}")
    return getattr(importlib.import_module(module), cls)


def make_backend(name: str, model: str, sampling: Sampling, options: dict) -> Backend:
    return backend_class(name)(model=model, sampling=sampling, options=options)
