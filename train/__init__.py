"""curate.train: SFT distillation and GRPO on TRL, with rewards that are thin wrappers
around the verifiers in curate.filters, and evaluation (`curate train`, `curate eval`).
See docs/ARCHITECTURE.md, "Rewards"."""
