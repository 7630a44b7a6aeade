"""Calibration of the mixed-language filter (filters/language.py) by failure class.

Clean traces (expected kept): the MATH-500 worked solutions (LaTeX-heavy,
tests/data/math500_test.jsonl) and the GSM8K test answers (terse arithmetic with
<<calculator>> annotations, curate/data/gsm8k_test.jsonl), each wrapped as an R1 trace:
"<think>\\n" + solution + "\\n</think>\\n\\n" + "The answer is \\boxed{answer}.".

1. False drops: the clean traces the `Language` filter (defaults) drops, with reasons;
   also on the 1,819 problem statements (MATH-500 problems, GSM8K questions) wrapped
   the same way.
2. Inserted foreign words: one word of a script English does not use
   (tests/data/language/words.tsv: Han, kana, Hangul, Cyrillic, Arabic, Hebrew, Greek,
   Devanagari, Bengali, Gurmukhi, Gujarati, Telugu, Tamil, Thai) put between two words
   of the prose of every clean trace: the share caught, per language.
3. Inserted foreign sentences: one sentence (tests/data/language/sentences.tsv, 28
   languages) at a random sentence boundary of the prose of every clean trace: the share
   caught by the filter, and by whole-trace lid.176 (one prediction for the whole text,
   as datatrove's LanguageFilter does) for comparison.
4. Single sentences: per language, the share labelled with their language by
   `classify_sentences` (the sentence's own label) and by plain lid.176 on the raw text.
5. Speed: `language_report` over the clean traces, docs/s on one core.

    python benchmarks/language_calibration.py [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import time
from collections import defaultdict
from pathlib import Path

import polars as pl

from curate.filters.language import Language, classify_sentences, language_report, lid_model, strip_non_prose

REPO = Path(__file__).resolve().parent.parent
LANG_DATA = REPO / "tests" / "data" / "language"
BOUNDARY = re.compile(r"(?<=[.!?])\s+|\n+")
BETWEEN_WORDS = re.compile(r"[a-z] (?=[a-z])")


def _tsv(name: str) -> list[dict]:
    with (LANG_DATA / name).open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def wrap(reasoning: str, answer: str) -> str:
    return f"<think>\n{reasoning.strip()}\n</think>\n\nThe answer is \\boxed{{{answer.strip()}}}."


def clean_traces() -> pl.DataFrame:
    rows = []
    for line in (REPO / "tests" / "data" / "math500_test.jsonl").open():
        r = json.loads(line)
        rows.append({"source": "math500", "completion": wrap(r["solution"], r["answer"])})
    for line in (REPO / "curate" / "data" / "gsm8k_test.jsonl").open():
        r = json.loads(line)
        reasoning, _, answer = r["answer"].rpartition("####")
        rows.append({"source": "gsm8k", "completion": wrap(reasoning, answer)})
    return pl.DataFrame(rows)


def problem_traces() -> pl.DataFrame:
    rows = []
    for line in (REPO / "curate" / "data" / "math500.jsonl").open():
        r = json.loads(line)
        rows.append({"source": "math500-problems", "completion": wrap(r["problem"], r["answer"])})
    for line in (REPO / "curate" / "data" / "gsm8k_test.jsonl").open():
        r = json.loads(line)
        rows.append({"source": "gsm8k-questions", "completion": wrap(r["question"], r["answer"].rpartition("####")[2])})
    return pl.DataFrame(rows)


def _in_prose(mixed: str, piece: str) -> bool:
    return piece in strip_non_prose(mixed.split("</think>")[0])


def insert_sentence(text: str, sentence: str, rng: random.Random) -> str:
    """`sentence` at a random sentence boundary of the reasoning's prose (up to 20
    boundaries tried: one inside a maths display or a figure is stripped with it), else
    at the end of the reasoning."""
    cuts = [m.end() for m in BOUNDARY.finditer(text, 0, text.index("</think>"))]
    rng.shuffle(cuts)
    for at in cuts[:20]:
        mixed = text[:at] + sentence + " " + text[at:]
        if _in_prose(mixed, sentence):
            return mixed
    return text.replace("\n</think>", f"\n{sentence}\n</think>", 1)


def insert_word(text: str, word: str, rng: random.Random) -> str:
    """`word` between two words of the reasoning's prose (a space between two
    lower-case letters, up to 50 tried), else before the end of the reasoning."""
    cuts = [m.start() + 1 for m in BETWEEN_WORDS.finditer(text, 0, text.index("</think>"))]
    rng.shuffle(cuts)
    for at in cuts[:50]:
        mixed = f"{text[:at]}{word} {text[at:]}"
        if _in_prose(mixed, f"{word} "):
            return mixed
    return text.replace("\n</think>", f" {word} is the word here.\n</think>", 1)


def whole_trace_foreign(texts: list[str]) -> list[bool]:
    labels, _ = lid_model().predict([" ".join(t.split()) for t in texts], k=1)
    return [label[0] != "__label__en" for label in labels]


def sentence_label(sentence: str) -> str | None:
    """The label `classify_sentences` gives a lone sentence (its longest piece's)."""
    labelled = [s for s in classify_sentences(sentence) if s.lang]
    return max(labelled, key=lambda s: s.letters).lang if labelled else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    f = Language()
    lid_model()
    language_report("Warm up: 总数 नमस्ते.")  # builds the script patterns outside the clock
    clean = clean_traces()
    texts = clean["completion"].to_list()
    out: dict = {"clean": {}, "words": {}, "sentences": {}, "single": {}}

    t = time.perf_counter()
    for text in texts:
        language_report(text)
    out["language_report_docs_per_s"] = round(len(texts) / (time.perf_counter() - t))
    both = pl.concat([clean, problem_traces()])
    reasons = f(both).reason.to_list()
    for source in ("math500", "gsm8k", "math500-problems", "gsm8k-questions"):
        mine = [r for r, s in zip(reasons, both["source"].to_list()) if s == source]
        dropped = [r for r in mine if r is not None]
        out["clean"][source] = {"rows": len(mine), "dropped": len(dropped), "reasons": dropped}
        print(f"clean {source}: {len(mine)} traces, falsely dropped {len(dropped)}")
        for r in dropped[:10]:
            print(f"    {r}")

    rng = random.Random(0)
    by_lang = defaultdict(list)
    for w in _tsv("words.tsv"):
        by_lang[(w["lang"], w["script"])].append(w["text"])
    print("inserted word (lang script): caught / traces")
    for (lang, script), words in by_lang.items():
        mixed = [insert_word(t, rng.choice(words), rng) for t in texts]
        caught = sum(r is not None for r in f(pl.DataFrame({"completion": mixed})).reason.to_list())
        out["words"][lang] = {"script": script, "caught": caught, "traces": len(mixed)}
        print(f"    {lang:3} {script:10} {caught}/{len(mixed)}")

    sentences = defaultdict(list)
    for s in _tsv("sentences.tsv"):
        sentences[s["lang"]].append(s["text"])
    print("inserted sentence (lang): caught / traces, whole-trace lid.176 caught")
    for lang, pool in sentences.items():
        mixed = [insert_sentence(t, rng.choice(pool), rng) for t in texts]
        caught = sum(r is not None for r in f(pl.DataFrame({"completion": mixed})).reason.to_list())
        whole = sum(whole_trace_foreign(mixed))
        out["sentences"][lang] = {"caught": caught, "traces": len(mixed), "whole_trace_lid": whole}
        print(f"    {lang:3} {caught}/{len(mixed)}  whole-trace {whole}/{len(mixed)}")

    print("single sentences (lang): classify_sentences correct, plain lid.176 correct / sentences")
    for lang, pool in sentences.items():
        ours = sum(sentence_label(s) == lang for s in pool)
        labels, _ = lid_model().predict(pool, k=1)
        plain = sum(label[0] == f"__label__{lang}" for label in labels)
        out["single"][lang] = {"ours": ours, "plain_lid": plain, "sentences": len(pool)}
        print(f"    {lang:3} {ours}/{len(pool)}  plain {plain}/{len(pool)}")

    n_drop = sum(v["dropped"] for v in out["clean"].values())
    n_clean = sum(v["rows"] for v in out["clean"].values())
    n_words = sum(v["caught"] for v in out["words"].values()), sum(v["traces"] for v in out["words"].values())
    n_sent = sum(v["caught"] for v in out["sentences"].values()), sum(v["traces"] for v in out["sentences"].values())
    worse = [lang for lang, v in out["single"].items() if v["ours"] < v["plain_lid"]]
    print(f"summary: false drops {n_drop}/{n_clean}; words caught {n_words[0]}/{n_words[1]}; "
          f"sentences caught {n_sent[0]}/{n_sent[1]}; single-sentence accuracy below plain lid.176 in: "
          f"{', '.join(worse) or 'none'}; language_report {out['language_report_docs_per_s']:,} docs/s (one core)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
