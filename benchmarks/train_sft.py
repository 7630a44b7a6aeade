"""How fast does `curate train sft` train, against TRL's SFT defaults? Both sides train the
same random-weight model on the same rows through TRL's SFTTrainer; each side runs in its
own process (so peak memory is its own), for `--warmup` steps and then `--steps` measured
steps. Printed per side: tokens/s (real tokens, padding excluded), median step time,
tokens per step, peak memory, MFU, and the ratio curate / TRL.

    python benchmarks/train_sft.py              # GPU: a Qwen2-1.5B-shaped model, rows up to 4k tokens
    python benchmarks/train_sft.py --cpu-tiny   # CPU: the tests' tiny Qwen2 (hidden 64, 2 layers)

TRL defaults: SFTConfig() with only max_length, batch size and the step count set (full-
sequence loss on `messages`, padded batches in random order, gradient checkpointing on, bf16
on; on CPU bf16 off, since TRL's default bf16=True refuses to start there). curate: the
SFTConfig `curate train sft` builds (train/sft.py, `sft_config`): on a GPU with
flash-attention, BFD packing (padding-free) at 16k tokens per sequence, bf16, Liger
where installed, no gradient checkpointing at this size; without flash-attention or on
CPU, batches grouped by length (no packing: sdpa cannot keep packed rows apart), and on CPU
fp32 without gradient checkpointing.

MFU = achieved model FLOPs / peak FLOPs, model FLOPs per token = 6·N (N: parameters
without the input embedding) + 6·layers·hidden·ℓ (causal attention, fwd+bwd, ℓ = the mean
row length). Peak: bf16 dense tensor-core FLOPs of the GPU (H100/H200 989 TFLOPs,
A100 312); on CPU, the fp32 matmul throughput measured here, so CPU MFU reads as a share
of what this CPU's matmul reaches.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GSM8K = REPO / "curate" / "data" / "gsm8k_test.jsonl"
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}
QWEN2_1_5B = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                  num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, tie_word_embeddings=True,
                  rope_theta=1000000.0)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
            head_dim=32, max_position_embeddings=2048, tie_word_embeddings=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-tiny", action="store_true", help="the tiny model on CPU")
    ap.add_argument("--steps", type=int, default=None, help="measured steps per side [GPU 20, CPU 8]")
    ap.add_argument("--warmup", type=int, default=None, help="unmeasured steps first [GPU 5, CPU 2]")
    ap.add_argument("--rows", type=int, default=None, help="distinct rows [GPU 2048, CPU 256]")
    ap.add_argument("--ablate", action="store_true",
                    help="also run curate with random batches, and curate with gradient checkpointing")
    ap.add_argument("--side", choices=["trl", "curate", "curate-random", "curate-ckpt"], help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    tiny = args.cpu_tiny
    setup = {
        "tiny": tiny,
        "steps": args.steps or (8 if tiny else 20),
        "warmup": args.warmup or (2 if tiny else 5),
        "rows": args.rows or (256 if tiny else 2048),
        "max_length": 512 if tiny else 4096,  # per row (both sides)
        "mean_tokens": 160 if tiny else 1500,
        "batch_size": 8,  # TRL's default per-device batch
        "packed_length": 16384,  # curate, packing on a GPU: tokens per packed sequence
    }
    if args.side:
        print(json.dumps(run_side(args.side, setup, Path(args.work))))
        return

    work = Path(tempfile.mkdtemp(prefix="bench-sft-"))
    build(setup, work)
    results = {}
    for side in ("trl", "curate", *(("curate-random", "curate-ckpt") if args.ablate else ())):
        cmd = [sys.executable, __file__, "--side", side, "--work", str(work), *(["--cpu-tiny"] if tiny else []),
               "--steps", str(setup["steps"]), "--warmup", str(setup["warmup"]), "--rows", str(setup["rows"])]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        if out.returncode != 0:
            sys.exit(f"{side} failed:\n{out.stderr[-4000:]}")
        results[side] = json.loads(out.stdout.strip().splitlines()[-1])
    report(setup, results)


def build(setup: dict, work: Path) -> None:
    """The random-weight model (saved once, loaded by both sides) and the rows."""
    import random

    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from curate.embedded import embedded_model_dir

    tok_dir = embedded_model_dir()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tok_dir)
    shape = TINY if setup["tiny"] else QWEN2_1_5B
    config = Qwen2Config(**{"vocab_size": len(tok), **shape},
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
                         dtype="float32" if setup["tiny"] else "bfloat16")
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    if not setup["tiny"]:
        model = model.to(torch.bfloat16)
    model.save_pretrained(work / "model")
    tok.pad_token = "<|endoftext|>"  # both sides pad with a token that is not the end of turn
    tok.save_pretrained(work / "model")

    words = " ".join(json.loads(line)["answer"] for line in GSM8K.read_text().splitlines()).split()
    rng = random.Random(0)
    rows = []
    for i in range(setup["rows"]):
        # reasoning lengths vary ~10x, as real traces do (lognormal, capped at max_length)
        n = min(int(rng.lognormvariate(0, 0.8) * setup["mean_tokens"] * 0.7), int(setup["max_length"] * 0.7))
        start = rng.randrange(len(words) - n - 1)
        reasoning = " ".join(words[start:start + max(n, 8)])
        rows.append({"messages": [
            {"role": "user", "content": f"Problem {i}: " + " ".join(words[start:start + 40])},
            {"role": "assistant", "content": f"<think>\n{reasoning}\n</think>\n\nThe answer is {i}."},
        ]})
    (work / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def run_side(side: str, setup: dict, work: Path) -> dict:
    import datasets
    import torch
    from transformers import AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from curate.train import sft

    datasets.disable_progress_bars()
    cuda = torch.cuda.is_available()
    tok = AutoTokenizer.from_pretrained(work / "model")
    rows = datasets.load_dataset("json", data_files=str(work / "rows.jsonl"), split="train")
    total_steps = setup["warmup"] + setup["steps"]
    out = work / f"out-{side}"
    if side == "trl":
        args = SFTConfig(output_dir=str(out), max_length=setup["max_length"], max_steps=total_steps,
                         per_device_train_batch_size=setup["batch_size"], report_to=[], disable_tqdm=True,
                         save_strategy="no", logging_steps=10_000, **({} if cuda else {"bf16": False}))
        model, data = str(work / "model"), rows
        settings = {"trl": "SFTConfig defaults" + ("" if cuda else ", bf16 off")}
    else:
        flash = cuda and _installed("flash_attn")
        cfg = sft.resolve({"student": str(work / "model"), "data": str(work / "rows.jsonl"), "max_steps": total_steps,
                           "max_length": setup["packed_length"] if flash else setup["max_length"],
                           "batch_size": 1 if flash else setup["batch_size"], "packing": flash,
                           "attn_implementation": "flash_attention_2" if flash else None,
                           "gradient_checkpointing": side == "curate-ckpt", "logging_steps": 10_000,
                           "group_by_length": False if side == "curate-random" else None})
        args, chosen = sft.sft_config(cfg, out)
        args.save_strategy = "no"
        model = sft.load_student(cfg, chosen["bf16"])
        data = sft.to_training_rows(rows, cfg["loss"], "rows")
        settings = {**chosen, "packing": flash, "attn": cfg["attn_implementation"] or "sdpa"}

    marks = []

    class Clock(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            marks.append((time.perf_counter(), trainer._total_train_tokens))

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok, callbacks=[Clock()])
    trainer.train()
    m = trainer.model.config
    (t0, n0), (t1, n1) = marks[setup["warmup"] - 1], marks[-1]
    steps = [b[0] - a[0] for a, b in zip(marks[setup["warmup"] - 1:], marks[setup["warmup"]:])]
    columns = trainer.train_dataset.column_names
    if "seq_lengths" in columns:  # packed: attention runs per document
        lengths = [n for seq in trainer.train_dataset["seq_lengths"] for n in seq]
    else:
        lengths = [len(x) for x in trainer.train_dataset["input_ids"]]
    params = (sum(p.numel() for p in trainer.model.parameters())
              - (0 if m.tie_word_embeddings else m.vocab_size * m.hidden_size))
    mean_len = sum(x * x for x in lengths) / sum(lengths)  # mean row length seen by a token
    flops_per_token = 6 * params + 6 * m.num_hidden_layers * m.hidden_size * mean_len
    tps = (n1 - n0) / (t1 - t0)
    if cuda:
        name = torch.cuda.get_device_name()
        peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
        memory = torch.cuda.max_memory_allocated() / 2**30
    else:
        import resource

        name, peak = f"CPU ({os.cpu_count()} cores)", cpu_matmul_flops()
        memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"side": side, "device": name, "tokens_per_s": tps, "step_s": statistics.median(steps),
            "tokens_per_step": (n1 - n0) / setup["steps"], "peak_memory_gib": memory,
            "mfu": flops_per_token * tps / peak if peak else None, "settings": settings,
            "mean_row_tokens": sum(lengths) / len(lengths)}


def cpu_matmul_flops(seconds: float = 2.0) -> float:
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        a @ b
        n += 1
    return n * 2 * 1024**3 / (time.perf_counter() - t)


def report(setup: dict, results: dict) -> None:
    trl, ours = results["trl"], results["curate"]
    print(f"device: {ours['device']} · "
          f"model: {'tiny Qwen2 (hidden 64, 2 layers)' if setup['tiny'] else 'Qwen2-1.5B shape'}"
          f" · {setup['rows']} rows, mean {ours['mean_row_tokens']:.0f} tokens · {setup['warmup']} warm-up + "
          f"{setup['steps']} measured steps per side")
    print(f"{'side':8s} {'tokens/s':>10s} {'step s':>8s} {'tok/step':>9s} {'peak GiB':>9s} {'MFU':>7s}  settings")
    for r in results.values():
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        print(f"{r['side']:8s} {r['tokens_per_s']:10,.0f} {r['step_s']:8.3f} {r['tokens_per_step']:9,.0f} "
              f"{r['peak_memory_gib']:9.2f} {mfu:>7s}  {json.dumps(r['settings'])}")
    print(f"curate / TRL defaults: {ours['tokens_per_s'] / trl['tokens_per_s']:.2f}x tokens/s")


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


if __name__ == "__main__":
    main()
