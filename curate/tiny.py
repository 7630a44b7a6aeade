"""A tiny random-weight student built on the fly: a Qwen2 (or Llama) with hidden size 64,
2 layers and head size 32 (vLLM's CPU attention needs >= 32) and the embedded SmolLM2's
tokenizer and chat template. It trains and generates in seconds on a CPU: the tests use it,
and `curate run --smoke` uses it as the student (`${tiny_model}` in a recipe)."""

from __future__ import annotations

from pathlib import Path

from curate.store import atomic_path


def build_tiny_model(out, arch: str = "qwen2") -> Path:
    """Write the model and its tokenizer into OUT (whole or not at all; seeded, so every
    build is the same model) and return OUT."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from curate.embedded import load_tokenizer

    if arch not in ("qwen2", "llama"):
        raise ValueError(f"arch: qwen2 or llama, not {arch!r}")
    tokenizer = load_tokenizer()
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        dtype="float32",
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(**common)) if arch == "qwen2" else LlamaForCausalLM(LlamaConfig(**common))
    out = Path(out)
    with atomic_path(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out
