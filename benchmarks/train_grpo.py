"""GRPO throughput: TRL 1.16's GRPOConfig defaults against curate's R1 configuration, in
one run, on the same random-weight policy, prompts and completion length.

    python benchmarks/train_grpo.py              # GPU: a Qwen2-1.5B-shaped policy, vLLM colocate if present
    python benchmarks/train_grpo.py --cpu-tiny   # CPU: the tests' tiny Qwen2 (hidden 64, 2 layers)

Both configurations go through `curate.train.grpo.run` (so the same data path, rewards
and trainer); "trl-defaults" restores TRL's values where ours differ (beta 0, no
reference model; loss `dapo`; the KL's importance weighting; 8 samples per prompt;
lr 1e-6), "curate-r1" is ours (beta 0.001 with a reference model, `grpo` loss, 16 samples
per prompt, lr 3e-6). Prompts per step and the completion length are the same, so a
step of ours carries twice the completions. Each configuration runs in its own process
(its peak memory is its own): step time (median over the steps after the first, which
holds start-up), completion tokens per second (a random policy never stops early, so
every completion is max-completion-length tokens), peak memory (GPU: torch's peak
allocated; CPU: peak RSS). The policy is Qwen2-1.5B's shape (hidden 1536, 28 layers,
12 heads, 2 KV heads, MLP 8960) with SmolLM2's tokenizer, so the vocabulary (49,152)
is smaller than Qwen's (151,936).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIGS = {
    "trl-defaults": {"num_generations": 8, "beta": 0.0, "loss_type": "dapo", "learning_rate": 1e-6,
                     "trl": {"use_bias_correction_kl": True}},
    "curate-r1": {},
}


def build_policy(out: Path, tiny: bool) -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from curate.embedded import load_tokenizer

    tokenizer = load_tokenizer()
    shape = (dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=32) if tiny else
             dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                  num_key_value_heads=2, head_dim=128))
    config = Qwen2Config(vocab_size=len(tokenizer), max_position_embeddings=4096, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, dtype="bfloat16" if not tiny else "float32", **shape)
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def child(args) -> None:
    """One configuration; prints one JSON line."""
    import torch

    from curate.train import grpo

    cuda = torch.cuda.is_available()
    out = Path(args.work) / args.config
    options = dict(policy=args.policy, prompts=str(REPO / "curate" / "data" / "gsm8k_sample.jsonl"), out=str(out),
                   rewards="accuracy,format", prompts_per_step=args.prompts_per_step, micro_batch=args.micro_batch,
                   max_steps=args.steps, max_completion_length=args.max_completion_length, save_steps=10_000,
                   progress=False, overwrite=True)
    options.update(CONFIGS[args.config])
    t0 = time.time()
    m = grpo.run(grpo.GRPOOptions(**options))
    wall = time.time() - t0
    steps = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [s for s in steps if "step_time" in s]
    measured = steps[1:] or steps
    step_time = statistics.median(s["step_time"] for s in measured)
    completions = args.prompts_per_step * (options.get("num_generations") or 16)
    tokens = statistics.mean(s["completions/mean_length"] for s in measured) * completions
    peak = (torch.cuda.max_memory_allocated() / 2**30 if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    print(json.dumps({"config": args.config, "generation": m["generation"], "completions_per_step": completions,
                      "step_time_s": round(step_time, 3), "completion_tokens_per_s": round(tokens / step_time, 1),
                      "peak_memory_gib": round(peak, 3), "peak_memory_kind": "cuda allocated" if cuda else "RSS",
                      "steps": len(steps), "wall_s": round(wall, 1),
                      "kl_logged": "kl" in steps[-1], "loss_type": m["config"]["grpo"]["loss_type"]}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu-tiny", action="store_true", help="the tests' tiny Qwen2 on CPU (runs anywhere)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per configuration (the first is warm-up)")
    p.add_argument("--prompts-per-step", type=int, default=None)
    p.add_argument("--micro-batch", type=int, default=None)
    p.add_argument("--max-completion-length", type=int, default=None)
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--policy", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    args = p.parse_args()
    tiny = args.cpu_tiny
    args.steps = args.steps or (4 if tiny else 6)
    args.prompts_per_step = args.prompts_per_step or (2 if tiny else 8)
    args.micro_batch = args.micro_batch or (8 if tiny else 16)
    args.max_completion_length = args.max_completion_length or (32 if tiny else 512)
    if args.config:
        child(args)
        return

    import torch

    if not tiny and not torch.cuda.is_available():
        sys.exit("no GPU here: run with --cpu-tiny")
    results = []
    with tempfile.TemporaryDirectory(prefix="curate-bench-grpo-") as work:
        policy = build_policy(Path(work) / "policy", tiny)
        for name in CONFIGS:
            cmd = [sys.executable, __file__, "--config", name, "--policy", str(policy), "--work", work,
                   "--steps", str(args.steps), "--prompts-per-step", str(args.prompts_per_step),
                   "--micro-batch", str(args.micro_batch), "--max-completion-length", str(args.max_completion_length)]
            r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            if r.returncode != 0:
                sys.exit(f"{name} failed:\n{r.stderr[-3000:]}")
            results.append(json.loads(r.stdout.strip().splitlines()[-1]))
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU, {os.cpu_count()} cores"
    print(f"GRPO, {'tiny Qwen2 (hidden 64, 2 layers)' if tiny else 'Qwen2-1.5B-shaped'} random policy, {device}; "
          f"{args.prompts_per_step} prompts/step, {args.max_completion_length} completion tokens, "
          f"{args.steps} steps (first excluded)")
    print(f"{'config':14s} {'generation':18s} {'compl/step':>10s} {'step s':>8s} {'tok/s':>9s} {'peak GiB':>9s}")
    for r in results:
        print(f"{r['config']:14s} {r['generation']:18s} {r['completions_per_step']:10d} {r['step_time_s']:8.2f} "
              f"{r['completion_tokens_per_s']:9.1f} {r['peak_memory_gib']:9.2f} ({r['peak_memory_kind']})")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device, "tiny": tiny, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
