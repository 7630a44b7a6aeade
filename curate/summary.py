"""What a chain of runs made, read from their manifests: one line per run (the counts
of its stage) and the files to open. `make demo` ends with it:

    python -m curate.summary runs/demo runs/demo-filter runs/demo-select runs/demo-mix
"""

from __future__ import annotations

import sys
from pathlib import Path

from curate.store import load_manifest


def describe(root: Path) -> tuple[str, list[str]]:
    """(the counts of the run in root, the paths worth opening)."""
    m = load_manifest(root) or {}
    stage = m.get("stage")
    if stage == "generate":
        c = m["counts"]
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(c["finish_reasons"].items()))
        return (f"{c['samples_done']} samples for {c['problems']} problems ({reasons})",
                [str(root / "part-*.parquet"), str(root / "generate.log")])
    if stage == "filter":
        f = m["funnel"]
        dropped = ", ".join(f"{s['filter']} {s['dropped']}" for s in f["steps"] if s["dropped"])
        opened = [str(root / "kept"), str(root / "rejected")] + [str(p) for p in [root / "report.html"] if p.exists()]
        return (f"kept {f['kept']} of {f['rows_in']} ({100 * f['kept'] / max(f['rows_in'], 1):.0f}%); "
                f"rejected {f['rejected']} ({dropped or 'none'})", opened)
    if stage == "select":
        c = m["counts"]
        return (f"{c['selected']} rows for {c['problems_selected']} of {c['problems']} problems; "
                f"{c['correct']} of {c['generated']} samples correct "
                f"({100 * c['correct'] / max(c['generated'], 1):.0f}%)",
                [str(root / "data"), str(root / "problems.parquet")])
    if stage == "mix":
        splits = ", ".join(f"{k} {v}" for k, v in m["splits"].items())
        return (f"{m['counts']['rows']} rows ({splits})",
                [str(root / "README.md"), str(root / "dataset"), str(root / "plots")])
    return f"status {m.get('status')}", [str(root)]


def main(argv: list[str] | None = None) -> None:
    for arg in argv if argv is not None else sys.argv[1:]:
        root = Path(arg)
        counts, paths = describe(root)
        stage = (load_manifest(root) or {}).get("stage")
        print(f"{stage:9s} {counts}\n{'':9s} open: {', '.join(paths)}")


if __name__ == "__main__":
    main()
