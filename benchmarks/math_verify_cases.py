"""`verify_math` against plain math-verify, on math-verify's own test cases and on real golds.

Cases: the parametrised (gold, prediction, expected) cases of math-verify's tests/, copied
once into benchmarks/data/math_verify_cases.jsonl (Apache-2.0, see
benchmarks/data/README.md; `--extract CHECKOUT` rebuilds that file from a checkout of
huggingface/Math-Verify). Only cases whose expected label holds at math-verify's default
verify options are scored (strict, no set-relation comparison, float rounding 6); the
others are counted as skipped.

Both sides get the same two strings:
  plain   verify(parse(gold), parse(prediction)), math-verify at its default settings;
  curate  verify_math(gold, prediction).correct: the prediction is the completion (no
          `</think>` in most cases, so all of it is the answer part), the gold is the
          reference answer as a user would put it in the `reference_answer` column.

Real golds: every MATH-500 and GSM8K gold (curate/data) against itself boxed (must be
correct) and against the golds of the next --shifts problems boxed (must be wrong, unless
it is the same answer: the pairs judged correct though written differently are listed,
to be read).

    python benchmarks/math_verify_cases.py [--shifts 1] [--json out.json] [--show-disagreements]
    python benchmarks/math_verify_cases.py --extract PATH/TO/Math-Verify
"""

from __future__ import annotations

import argparse
import ast
import json
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CASES = REPO / "benchmarks" / "data" / "math_verify_cases.jsonl"
MATH500 = REPO / "curate" / "data" / "math500.jsonl"
GSM8K = REPO / "curate" / "data" / "gsm8k_test.jsonl"

# verify()'s options at math-verify's defaults; a case run with others is skipped
DEFAULT_OPTIONS = {"strict": True, "allow_set_relation_comp": False, "precision": 6}
TEST_FILES = ("test_all.py", "test_boxed.py", "test_numina_cases.py", "test_open_thoughts.py",
              "test_strict.py", "test_yujianll.py")


# --- extraction (once, from a checkout) -----------------------------------------------


def extract(checkout: Path) -> list[dict]:
    """Every parametrised case with a gold and a prediction in math-verify's tests/, with
    the verify options its test function passes (constants or parameters)."""
    cases = []
    for name in TEST_FILES:
        tree = ast.parse((checkout / "tests" / name).read_text())
        for fn in (n for n in tree.body if isinstance(n, ast.FunctionDef)):
            for deco in fn.decorator_list:
                if not (isinstance(deco, ast.Call) and ast.unparse(deco.func).endswith("parametrize")):
                    continue
                params = [p.strip() for p in ast.literal_eval(deco.args[0]).split(",")]
                if "gold" not in params or "pred" not in params:
                    continue
                options = _call_options(fn, params)
                for element in deco.args[1].elts:
                    try:
                        values = dict(zip(params, ast.literal_eval(element)))
                    except ValueError:  # computed at import time (f-strings): not copied
                        continue
                    case_options = {k: values[v] if isinstance(v, _Param) else v for k, v in options.items()}
                    expected = values.get("expected", values.get("result"))
                    cases.append({"file": name, "test": fn.name, "gold": values["gold"], "pred": values["pred"],
                                  "expected": bool(expected), **case_options})
    return cases


class _Param(str):
    """An option whose value is the test's parameter of that name."""


def _call_options(fn: ast.FunctionDef, params: list[str]) -> dict:
    options = {}
    for call in (n for n in ast.walk(fn) if isinstance(n, ast.Call)):
        for kw in call.keywords:
            key = {"float_rounding": "precision"}.get(kw.arg, kw.arg)
            if key in DEFAULT_OPTIONS:
                if isinstance(kw.value, ast.Name) and kw.value.id in params:
                    options[key] = _Param(kw.value.id)
                elif isinstance(kw.value, ast.Constant):
                    options[key] = kw.value.value
    return options


# --- scoring ----------------------------------------------------------------------------


def plain(gold: str, pred: str) -> bool:
    from math_verify import parse, verify

    return bool(verify(parse(gold), parse(pred)))


def curate(gold: str, pred: str) -> bool:
    from curate.filters.math import verify_math

    return verify_math(gold, pred).correct


def at_defaults(case: dict) -> bool:
    return all(case.get(k, v) == v for k, v in DEFAULT_OPTIONS.items())


def run_cases(cases: list[dict]) -> dict:
    per_file: dict[str, dict] = defaultdict(lambda: {"cases": 0, "plain": 0, "curate": 0, "skipped": 0})
    disagreements = []
    for i, case in enumerate(cases):
        row = per_file[case["file"]]
        if not at_defaults(case):
            row["skipped"] += 1
            continue
        p, c = plain(case["gold"], case["pred"]), curate(case["gold"], case["pred"])
        row["cases"] += 1
        row["plain"] += p == case["expected"]
        row["curate"] += c == case["expected"]
        if p != case["expected"] or c != case["expected"]:
            disagreements.append({"index": i, "file": case["file"], "test": case["test"], "expected": case["expected"],
                                  "plain": p, "curate": c, "gold": case["gold"], "pred": case["pred"]})
    return {"per_file": dict(per_file), "disagreements": disagreements}


def run_golds(shifts: int) -> dict:
    from curate.filters.math import verify_math

    math500 = [json.loads(line)["answer"] for line in MATH500.open()]
    gsm8k = [json.loads(line)["answer"].rsplit("####", 1)[1].strip() for line in GSM8K.open()]
    out = {}
    for name, golds in (("MATH-500", math500), ("GSM8K", gsm8k)):
        started = time.perf_counter()
        own = [verify_math(g, f"\\boxed{{{g}}}").status for g in golds]
        nxt = [(g, golds[(i + k) % len(golds)]) for k in range(1, shifts + 1) for i, g in enumerate(golds)]
        other = [verify_math(g, f"\\boxed{{{a}}}").status for g, a in nxt]
        plain_own = [plain(f"\\boxed{{{g}}}", f"\\boxed{{{g}}}") for g in golds]
        plain_other = [plain(f"\\boxed{{{g}}}", f"\\boxed{{{a}}}") for g, a in nxt]
        out[name] = {
            "golds": len(golds),
            "pairs": len(nxt),
            "own_correct": own.count("correct"),
            "own_not_correct": [(g, s) for g, s in zip(golds, own) if s != "correct"],
            "other_wrong": sum(s == "wrong" for s in other),
            # judged the same answer though written differently (identical golds are left out): to be read
            "other_correct": sorted({(g, a) for (g, a), s in zip(nxt, other) if s == "correct" and g != a}),
            "other_correct_pairs": other.count("correct"),
            "other_other": [(g, a, s) for (g, a), s in zip(nxt, other) if s not in ("correct", "wrong")],
            "plain_own_correct": sum(plain_own),
            "plain_other_correct": sum(plain_other),
            "seconds": round(time.perf_counter() - started, 1),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--extract", type=Path, metavar="CHECKOUT",
                    help="rebuild the case file from a Math-Verify checkout")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--show-disagreements", action="store_true")
    ap.add_argument("--shifts", type=int, default=1, help="golds against the answers of the next N problems")
    args = ap.parse_args()
    if args.extract:
        cases = extract(args.extract)
        CASES.parent.mkdir(parents=True, exist_ok=True)
        CASES.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cases))
        print(f"{len(cases)} cases -> {CASES.relative_to(REPO)}")
        return

    cases = [json.loads(line) for line in CASES.open()]
    result = run_cases(cases)
    print(f"{'file':<24} {'cases':>5} {'plain':>6} {'curate':>7} {'skipped':>8}")
    totals = defaultdict(int)
    for name, row in result["per_file"].items():
        print(f"{name:<24} {row['cases']:>5} {row['plain']:>6} {row['curate']:>7} {row['skipped']:>8}")
        for k, v in row.items():
            totals[k] += v
    print(f"{'all':<24} {totals['cases']:>5} {totals['plain']:>6} {totals['curate']:>7} {totals['skipped']:>8}")
    for d in result["disagreements"]:
        if args.show_disagreements or d["curate"] != d["expected"]:
            print(f"  #{d['index']} {d['file']}::{d['test']} expected={int(d['expected'])} plain={int(d['plain'])} "
                  f"curate={int(d['curate'])}  gold={d['gold'][:70]!r}  pred={d['pred'][-70:]!r}")

    result["golds"] = run_golds(args.shifts)
    for name, g in result["golds"].items():
        print(f"{name}: own boxed correct {g['own_correct']}/{g['golds']} (plain {g['plain_own_correct']}); "
              f"other problems' answers wrong {g['other_wrong']}/{g['pairs']}, correct {g['other_correct_pairs']} "
              f"(plain correct {g['plain_other_correct']}), other statuses {len(g['other_other'])}; "
              f"{g['seconds']} s")
        for item in g["own_not_correct"] + g["other_correct"] + g["other_other"]:
            print(f"  {item}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
