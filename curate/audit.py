"""`curate audit RUN_DIR`: where the rule verifier and the LLM judge disagree.

Reads a `curate filter` run made with the math or code filter in cascade mode
(filters/judge.py): every row the judge saw has `judge_verdict` beside the rules'
`math_status` (or `code_status`). Two kinds:

- rows the rules could not decide (no answer read, a reference they cannot parse, a
  timeout): the judge decided them; counted by rule status;
- rows the rules decided and the judge was also asked about (the judge's `sample`):
  agreements and disagreements, each disagreement given a likely cause (unparsed,
  identical answers, formatting, units, choice letters,
  numeric precision, other) with examples.

From the sampled rows, taking the judge as the reference, the rules' false-negative
rate (judged equivalent, ruled wrong) and false-positive rate (judged not equivalent,
ruled correct), each with a 95% Wilson interval. Printed as a table; written as
RUN_DIR/audit.json and a self-contained page RUN_DIR/audit.html.

Code rows: the rules cannot fairly decide a stdio output that differs from the expected
one, so every such row (within the cascade's limits) is an undecided one the judge
decided, its cause read from the outputs the judge saw (`code_judged`: identical
output, whitespace, case, float formatting, numeric precision, several, other); the
sample holds only passing rows, so it gives a false-positive rate and no false-negative
one (the judge's verdicts on the undecided rows are that figure, over all of them).
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from curate.errors import CurateError
from curate.options import opt
from curate.store import write_json, write_text_atomic

COLUMNS = ("sample_id", "problem", "reference_answer", "math_status", "math_predicted", "judge_verdict", "verdict_by",
           "code_status", "code_judged")
EXAMPLES = 5
Z95 = 1.959963984540054


@dataclass
class AuditOptions:
    run_dir: str = opt(help="A `curate filter` output made with `math` or `code` in `mode: cascade`.", argument=True,
                       path="dir")
    out: str | None = opt(None, "The HTML page. Default: RUN_DIR/audit.html (and audit.json beside it).",
                          path="file")
    examples: int = opt(EXAMPLES, "Examples shown per cause.", min=0)


def read_rows(run_dir: Path) -> pl.DataFrame:
    """Every row of the run, kept and rejected, with the verdict columns."""
    files = sorted((run_dir / "kept").glob("*.parquet")) + sorted((run_dir / "rejected").glob("*.parquet"))
    if not files:
        raise CurateError(f"{run_dir}: not a `curate filter` output (no kept/ or rejected/ shards)")
    frames = []
    for f in files:
        names = pl.read_parquet_schema(f)
        if "judge_verdict" not in names:
            continue
        frames.append(pl.read_parquet(f, columns=[c for c in COLUMNS if c in names]))
    if not frames:
        raise CurateError(f"{run_dir}: no judge verdicts; run the math or code filter with "
                          "`mode: cascade, judge: {...}` to audit it")
    return pl.concat(frames, how="diagonal_relaxed")


# -- causes ----------------------------------------------------------------------------

_CHOICE = re.compile(r"^\(?([A-Ea-e])\)?[.:]?$")
_UNITS = re.compile(r"\\(?:text|mathrm|textbf|mbox)\{[^{}]*\}|\\[%$]|[%$°]|\b[a-zA-Z]{2,}\b")
_FORMAT = re.compile(r"\\left|\\right|\\!|\\,|\\;|\\ |\$|\s|\{|\}|\.$|\\displaystyle")


def _formatting(s: str) -> str:
    return _FORMAT.sub("", s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")).lower()


def _number(s: str) -> float | None:
    s = s.replace(",", "").strip().rstrip(".")
    try:
        return float(s)
    except ValueError:
        return None


def cause(status: str | None, predicted: str | None, reference: str | None) -> str:
    """A likely cause of a disagreement between the rules and the judge."""
    if not predicted or status in ("no_answer", "unparseable_gold", "timeout", "error"):
        named = {"unparseable_gold": "unparsed reference", "timeout": "timeout", "error": "error"}
        return named.get(status, "unparsed")
    p, r = predicted.strip(), (reference or "").strip()
    if p == r:
        return "identical answers"  # the rules read exactly the reference: the judge is the likelier error
    if _CHOICE.match(p) or _CHOICE.match(r):
        return "choice letters"
    if _formatting(p) == _formatting(r):
        return "formatting"
    pu, ru = _UNITS.sub("", p).strip(), _UNITS.sub("", r).strip()
    if (pu, ru) != (p, r) and pu and _formatting(pu) == _formatting(ru):
        return "units"
    a, b = _number(pu or p), _number(ru or r)
    if a is not None and b is not None and math.isclose(a, b, rel_tol=1e-2, abs_tol=1e-9):
        return "numeric precision"
    return "other"


def code_cause(expected: str, output: str) -> str:
    """A likely cause of a disagreement between a strict comparison of outputs and the judge."""
    def lines(text: str) -> list[str]:
        return [line.rstrip() for line in text.strip().splitlines()]

    if lines(expected) == lines(output):
        return "identical output"
    want, got = expected.split(), output.split()
    if want == got:
        return "whitespace"
    if [w.lower() for w in want] == [g.lower() for g in got]:
        return "case"
    if len(want) != len(got):
        return "other"
    pairs = [(w, g, _number(w), _number(g)) for w, g in zip(want, got) if w.lower() != g.lower()]
    if not all(a is not None and b is not None for _, _, a, b in pairs):
        return "other"
    if all(a == b for _, _, a, b in pairs):
        return "float formatting"
    if all(math.isclose(a, b, rel_tol=1e-2, abs_tol=1e-9) for _, _, a, b in pairs):
        return "numeric precision"
    return "other"


def _code_cause(judged: str | None) -> str:
    causes = {code_cause(e, o) for e, o in json.loads(judged or "[]")}
    return causes.pop() if len(causes) == 1 else "several" if causes else "other"


def wilson(k: int, n: int) -> tuple[float | None, float | None, float | None]:
    """(rate, low, high): k of n with the 95% Wilson score interval; Nones when n = 0."""
    if n == 0:
        return None, None, None
    p = k / n
    denominator = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denominator
    return p, max(0.0, centre - half), min(1.0, centre + half)


# -- the audit -------------------------------------------------------------------------


def audit(rows: pl.DataFrame, examples: int = EXAMPLES) -> dict:
    code = "code_status" in rows.columns and "math_status" not in rows.columns
    status, right, wrong = ("code_status", "passed", "failed") if code else ("math_status", "correct", "wrong")
    fields = (("sample_id", "problem", "expected_output", "code_output", "code_status", "judge_verdict") if code else
              ("sample_id", "problem", "reference_answer", "math_predicted", "math_status", "judge_verdict"))
    judged = rows.filter(pl.col("judge_verdict").is_not_null())
    if code:  # a failed code row the judge saw had differing outputs: the rules could not decide it
        first = [json.loads(j or "[]")[:1] or [[None, None]] for j in judged["code_judged"].to_list()]
        judged = judged.with_columns(expected_output=pl.Series([f[0][0] for f in first], dtype=pl.String),
                                     code_output=pl.Series([f[0][1] for f in first], dtype=pl.String))
    decided = judged.filter(pl.col(status).is_in([right] if code else [right, wrong]))
    undecided = judged.filter(~pl.col(status).is_in([right] if code else [right, wrong]))
    sure = decided.filter(pl.col("judge_verdict").is_in(["yes", "no"]))
    judge_yes = sure.filter(pl.col("judge_verdict") == "yes")
    judge_no = sure.filter(pl.col("judge_verdict") == "no")
    fn = judge_yes.filter(pl.col(status) == wrong)
    fp = judge_no.filter(pl.col(status) == right)
    disagreements = []
    for kind, frame in (("rules wrong, judge equivalent", fn), ("rules correct, judge not equivalent", fp),
                        ("undecided by rules", undecided)):
        for row in frame.iter_rows(named=True):
            why = (_code_cause(row["code_judged"]) if code else
                   cause(row["math_status"], row.get("math_predicted"), row.get("reference_answer")))
            disagreements.append({"kind": kind, "cause": why, **row})
    groups: dict[tuple[str, str], list] = {}
    for d in disagreements:
        groups.setdefault((d["kind"], d["cause"]), []).append(d)
    table = [{"kind": kind, "cause": c, "count": len(items),
              "examples": [{k: _short(items[i].get(k)) for k in fields} for i in range(min(examples, len(items)))]}
             for (kind, c), items in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))]

    def rate(k: int, n: int) -> dict:
        value, low, high = wilson(k, n)
        return {"count": k, "of": n, "rate": value, "ci95": [low, high]}

    return {
        "rows": rows.height,
        "judged": judged.height,
        "judged_undecided": undecided.height,
        "judged_undecided_by_verdict": dict(undecided.group_by("judge_verdict").len().iter_rows()),
        "sampled_decided": decided.height,
        "sampled_unclear": decided.height - sure.height,
        "agreement": rate(sure.height - fn.height - fp.height, sure.height),
        "false_negative_rate": rate(0, 0) if code else rate(fn.height, judge_yes.height),
        "false_positive_rate": rate(fp.height, judge_no.height),
        "disagreements": table,
    }


def _short(value, limit: int = 300):
    if isinstance(value, str) and len(value) > limit:
        return value[: limit - 1] + "…"
    return value


def _pct(r: dict) -> str:
    if r["rate"] is None:
        return "n/a (0 rows)"
    low, high = r["ci95"]
    return f"{100 * r['rate']:.1f}% [{100 * low:.1f}–{100 * high:.1f}] ({r['count']}/{r['of']})"


def summary_lines(result: dict) -> list[str]:
    lines = [f"rows {result['rows']:,}; judged {result['judged']:,} "
             f"({result['judged_undecided']:,} the rules left undecided, {result['sampled_decided']:,} sampled)",
             "  the judge on the undecided: " + (", ".join(f"{v} {n:,}" for v, n in sorted(
                 result["judged_undecided_by_verdict"].items(), key=lambda kv: str(kv[0]))) or "none"),
             f"rules vs judge on the sample: agreement {_pct(result['agreement'])}",
             f"  rules' false-negative rate {_pct(result['false_negative_rate'])}",
             f"  rules' false-positive rate {_pct(result['false_positive_rate'])}"]
    return lines


def _get(example: dict, what: str):
    """A math or code example's reference, what was read, and the rules' status."""
    names = {"reference": ("reference_answer", "expected_output"), "read": ("math_predicted", "code_output"),
             "status": ("math_status", "code_status")}[what]
    return example.get(names[0], example.get(names[1]))


def page(run_dir: Path, result: dict) -> str:
    esc = html.escape
    rows = []
    for g in result["disagreements"]:
        ex = "".join(f"<li><code>{esc(str(e['sample_id']))}</code> reference <code>{esc(str(_get(e, 'reference')))}"
                     f"</code> · read <code>{esc(str(_get(e, 'read')))}</code> · rules {esc(str(_get(e, 'status')))}"
                     f" · judge {esc(str(e['judge_verdict']))}<br><small>{esc(str(e['problem']))}</small></li>"
                     for e in g["examples"])
        rows.append(f"<tr><td>{esc(g['kind'])}</td><td>{esc(g['cause'])}</td><td class=n>{g['count']}</td>"
                    f"<td><ul>{ex}</ul></td></tr>")
    summary = "".join(f"<li>{esc(line.strip())}</li>" for line in summary_lines(result))
    return f"""<!doctype html><html lang=en><head><meta charset=utf-8><title>curate audit: {esc(run_dir.name)}</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #ddd;padding:6px;vertical-align:top;text-align:left}}td.n{{text-align:right}}
code{{background:#f4f4f4;padding:1px 3px}}small{{color:#555}}</style></head><body>
<h1>Rules vs judge: {esc(str(run_dir))}</h1><ul id=summary>{summary}</ul>
<h2>Disagreements by cause</h2><table id=causes><tr><th>kind</th><th>cause</th><th>rows</th><th>examples</th></tr>
{''.join(rows) or '<tr><td colspan=4>none</td></tr>'}</table>
<p><small>Rates take the judge as the reference, on the decided rows the judge was asked about (its sample);
the interval is the 95% Wilson score interval.</small></p></body></html>"""


def run(opts: AuditOptions) -> tuple[Path, dict]:
    run_dir = Path(opts.run_dir)
    result = audit(read_rows(run_dir), opts.examples)
    out = Path(opts.out) if opts.out else run_dir / "audit.html"
    write_json(out.with_suffix(".json"), result)
    write_text_atomic(out, page(run_dir, result))
    return out, result
