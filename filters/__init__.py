"""curate.filters: one module per filter (format, length, math, code, language,
readability, dedup, decontam). Each module holds a pure verifier that returns a
`Verdict` (filters/base.py), reused by curate.train as a GRPO reward, and a `Filter`
class that the chain runner (`curate filter`) applies to batches.

`FILTERS` names them; `get_filter(name)` imports the one asked for, so importing this
package imports none of them (nor polars, fastText or math-verify)."""

from __future__ import annotations

import importlib

# name -> (module in this package, class)
FILTERS = {
    "format": ("format", "Format"),
    "length": ("length", "Length"),
    "math": ("math", "Math"),
    "code": ("code", "Code"),
    "language": ("language", "Language"),
    "readability": ("readability", "Readability"),
    "dedup": ("dedup", "Dedup"),
    "decontam": ("decontam", "Decontam"),
}


def filter_names() -> list[str]:
    """The filters a chain can name, in the order of FILTERS."""
    return list(FILTERS)


def get_filter(name: str) -> type:
    """The Filter class registered as `name`, imported now. An unknown name, or a filter
    whose dependencies are not installed here, is a CurateError."""
    from curate.errors import CurateError

    if name not in FILTERS:
        raise CurateError(f"unknown filter {name!r}; available: {', '.join(FILTERS)}")
    module, cls = FILTERS[name]
    try:
        return getattr(importlib.import_module(f"{__name__}.{module}"), cls)
    except ModuleNotFoundError as e:
        raise CurateError(f"filter {name} is not available here ({e})") from None
