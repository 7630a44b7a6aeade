"""curate.filters: one module per filter (format, length, math, code, language,
readability, dedup, decontam). Each module exposes a pure per-row verifier, reused by
curate.train as a GRPO reward, and a batch filter over a polars DataFrame used by the
chain runner (`curate filter`). See docs/ARCHITECTURE.md, "Filters"."""
