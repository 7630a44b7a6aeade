"""Readability: DeepSeek-R1's "readable reasoning" rules, made measurable.

R1 filtered its cold-start and rejection-sampled data for "long paragraphs, code blocks
and mixed languages" (language has its own filter). Degenerate generations also loop:
the same line or paragraph again and again. The pure function is

    readability_signals(completion, is_code_problem=False) -> dict

computed on the reasoning (the `<think>` part; the whole text when there is none):

- longest_paragraph_chars: paragraphs are separated by blank lines;
- code_fences_in_reasoning: how many ``` the reasoning holds;
- duplicate_line_fraction: characters in lines that repeat an earlier line, over the
  characters of all lines; blank lines and lines that are only maths or code delimiters
  (`\\[`, `\\]`, `$$`, `\\begin{align*}`, a lone brace, a fence) are skipped, because
  counting them is what makes Gopher's rule drop clean maths (docs/ARCHITECTURE.md,
  "Choices and measured pitfalls");
- duplicate_paragraph_fraction: the same over paragraphs;
- top_2gram / top_3gram / top_4gram: Gopher's "fraction of characters covered by the
  most frequent n-gram" (occurrences x characters of its words, over the characters
  of all words), on the prose: maths spans (`$…$`, `$$…$$`, `\\[…\\]`, `\\(…\\)`,
  `\\begin{env}…\\end{env}`) are removed first, since maths repeats its symbols
  by nature (`\\cos \\left( \\frac{2 \\pi}{15} \\right)` four times in one clean
  line), and words must hold a letter or digit; 0 under 100 prose words;
- unique_word_ratio: distinct over all prose words, in 500-word windows (step 250),
  the lowest window: a whole-text ratio falls with length alone (a long clean trace
  would look like a loop), a window's does not, and a loop at the end still shows.

For a code problem, fenced code blocks are left out of the line, paragraph and n-gram
signals (code repeats lines by nature) but still counted as fences.

`Readability` applies one threshold per signal (`Readability.check(completion) ->
Verdict`, the first rule broken); every threshold is a parameter. The
defaults were calibrated on clean maths solutions (MATH-500 `solution` and GSM8K
`answer`, wrapped as `<think>solution</think>\\n\\nfinal`): together they drop 0 of the
1,819 clean rows (Gopher's repetition rules as they are, delimiter lines counted and
thresholds 0.30 / 0.20 / 0.18 / 0.16, drop 215 of them), while a paragraph repeated 10
times, a line repeated 50 times, a 6,000-character paragraph and a code fence in a maths
reasoning are all dropped. Each
default sits well beyond the worst clean value (see the parameter comments); re-check
them on your teacher's traces, which are longer than these solutions.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import polars as pl

from curate.filters.base import Decision, RowFilter, Verdict
from curate.parsing import parse_completion

PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
FENCED_BLOCK = re.compile(r"```.*?(?:```|\Z)", re.S)
DELIMITER_LINE = re.compile(r"\\\[|\\\]|\\\(|\\\)|\$\$?|\\(begin|end)\{[^}]*\}|[{}()\[\]]|```\w*|\\\\")
MATH_SPAN = re.compile(r"\$\$.*?\$\$|\$[^$]*\$|\\\[.*?\\\]|\\\(.*?\\\)|\\begin\{([a-z]+\*?)\}.*?\\end\{\1\}", re.S)
NO_WORD_TOKEN = re.compile(r"(?<!\S)[^\w\s]+(?!\S)")  # a whitespace-delimited token with no letter or digit
MIN_NGRAM_WORDS = 100  # below this the most frequent n-gram says nothing (Gopher: 50)
WINDOW, STEP = 500, 250


def repeated_fraction(pieces: list[str]) -> float:
    """Characters in pieces that repeat an earlier piece, over all characters."""
    seen, repeated, total = set(), 0, 0
    for piece in pieces:
        total += len(piece)
        if piece in seen:
            repeated += len(piece)
        seen.add(piece)
    return repeated / total if total else 0.0


def top_ngram_fractions(words: list[str], ns: tuple[int, ...] = (2, 3, 4)) -> dict[int, float]:
    """Gopher, for each n: characters covered by the most frequent word n-gram (the
    first to occur, among equals), over all word characters; 0 when no n-gram occurs
    twice, or under MIN_NGRAM_WORDS words."""
    ids, lengths = _word_ids([words])
    return _top_ngrams(words, ids, lengths, ns)


def _word_ids(texts_words: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Integer ids and lengths of the words of many texts, all texts' words in one
    vectorised pass (polars): equal words share an id."""
    flat = pl.Series([w for words in texts_words for w in words], dtype=pl.String)
    return (flat.cast(pl.Categorical).to_physical().to_numpy().astype(np.int64),
            flat.str.len_chars().to_numpy().astype(np.int64))


def _top_ngrams(words: list[str], ids: np.ndarray, lengths: np.ndarray, ns: tuple[int, ...] = (2, 3, 4)
                ) -> dict[int, float]:
    """top_ngram_fractions of one text's `words`, given their ids and lengths: the
    n-grams become integer codes counted with numpy."""
    if len(words) < max(*ns, MIN_NGRAM_WORDS):
        return dict.fromkeys(ns, 0.0)
    _, ids = np.unique(ids, return_inverse=True)  # 0 .. distinct - 1, so the codes stay small
    vocab = int(ids.max()) + 1
    if vocab ** max(ns) >= 2**62:  # the codes would overflow: count tuples
        return {n: _top_ngram_fraction_tuples(words, n) for n in ns}
    total = int(lengths.sum())
    out, codes, size = {}, ids, 1
    for n in sorted(ns):
        while size < n:  # extend every code by the next word
            codes = codes[:-1] * vocab + ids[size:]
            size += 1
        _, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
        count = int(counts.max())
        first = int(np.flatnonzero(counts[inverse] == count)[0])
        out[n] = count * int(lengths[first : first + n].sum()) / total if count >= 2 else 0.0
    return out


def _top_ngram_fraction_tuples(words: list[str], n: int) -> float:
    counts = Counter(zip(*(words[i:] for i in range(n))))
    gram, count = counts.most_common(1)[0]
    return count * sum(map(len, gram)) / sum(map(len, words)) if count >= 2 else 0.0


def lowest_window_unique_ratio(words: list[str]) -> float:
    """Distinct/total words in 500-word windows (step 250); the lowest. 1.0 if empty."""
    return _lowest_window_unique_ratio(_word_ids([words])[0])


def _lowest_window_unique_ratio(ids: np.ndarray) -> float:
    """lowest_window_unique_ratio of words given by their ids, with numpy: a word is new
    in a window when its previous occurrence lies before the window's start."""
    n = len(ids)
    if n == 0:
        return 1.0
    if n <= WINDOW:
        return len(np.unique(ids)) / n
    order = np.argsort(ids, kind="stable")
    same = ids[order[1:]] == ids[order[:-1]]
    previous = np.full(n, -1, dtype=np.int64)
    previous[order[1:][same]] = order[:-1][same]
    starts = np.array([*range(0, n - WINDOW + 1, STEP), n - WINDOW], dtype=np.int64)[:, None]
    distinct = (previous[starts + np.arange(WINDOW)] < starts).sum(axis=1)
    return float((distinct / WINDOW).min())


def readability_signals(completion: str, is_code_problem: bool = False) -> dict:
    """The signals of one completion (see the module docstring)."""
    return readability_signals_batch([completion], [is_code_problem])[0]


def readability_signals_batch(completions: list[str], is_code: list[bool]) -> list[dict]:
    """readability_signals of many completions: the texts are cut per completion, the
    words of all of them get integer ids in one pass (`_word_ids`)."""
    parts = [_parts(c, code) for c, code in zip(completions, is_code)]
    ids, lengths = _word_ids([words for *_, words in parts])
    out, start = [], 0
    for fences, paragraphs, lines, words in parts:
        end = start + len(words)
        doc_ids = ids[start:end]
        top = _top_ngrams(words, doc_ids, lengths[start:end])
        start = end
        out.append({
            "longest_paragraph_chars": max(map(len, paragraphs), default=0),
            "code_fences_in_reasoning": fences,
            "duplicate_line_fraction": repeated_fraction(lines),
            "duplicate_paragraph_fraction": repeated_fraction(paragraphs),
            "top_2gram": top[2],
            "top_3gram": top[3],
            "top_4gram": top[4],
            "unique_word_ratio": _lowest_window_unique_ratio(doc_ids),
        })
    return out


def _parts(completion: str, is_code_problem: bool) -> tuple[int, list[str], list[str], list[str]]:
    """(code fences in the reasoning, paragraphs, lines, prose words) of one completion."""
    reasoning = parse_completion(completion).reasoning
    text = reasoning if reasoning is not None else completion
    fences = reasoning.count("```") if reasoning else 0
    if is_code_problem:
        text = FENCED_BLOCK.sub("\n\n", text)

    paragraphs = [p.strip() for p in PARAGRAPH_BREAK.split(text)]
    paragraphs = [p for p in paragraphs if p and not DELIMITER_LINE.fullmatch(p)]
    lines = [line.strip() for line in text.split("\n")]
    lines = [line for line in lines if line and not DELIMITER_LINE.fullmatch(line)]
    prose = MATH_SPAN.sub(" ", text)
    return fences, paragraphs, lines, NO_WORD_TOKEN.sub(" ", prose).lower().split()


class Readability(RowFilter):
    name = "readability"
    parallel = True  # pure per-row Python work: the chain runs it on slices in worker processes
    needs = ("completion",)
    uses = ("domain",)  # "code": fenced code is allowed in the reasoning and left out of the signals
    scores = {"readability_longest_paragraph": pl.Int64, "readability_duplicate_lines": pl.Float64}

    def __init__(
        self,
        max_paragraph_chars: int = 3000,  # clean max 1,829 (an [asy] figure)
        allow_code_in_reasoning: bool | None = None,  # None: only where domain == "code"
        max_duplicate_line_fraction: float = 0.3,  # clean max 0.26 (two [asy] figures)
        max_duplicate_paragraph_fraction: float = 0.3,  # clean max 0.05
        max_top_2gram_fraction: float = 0.3,  # clean max 0.21 (Gopher: 0.20)
        max_top_3gram_fraction: float = 0.3,  # clean max 0.22 (Gopher: 0.18)
        max_top_4gram_fraction: float = 0.3,  # clean max 0.19 (Gopher: 0.16)
        min_unique_word_ratio: float = 0.2,  # clean min 0.31
    ):
        self.max_paragraph_chars = self.param("max_paragraph_chars", max_paragraph_chars, int, minimum=1)
        self.allow_code_in_reasoning = self.param(
            "allow_code_in_reasoning", allow_code_in_reasoning, bool, optional=True)
        fraction = dict(minimum=0.0, maximum=1.0)
        self.max_duplicate_line_fraction = self.param(
            "max_duplicate_line_fraction", max_duplicate_line_fraction, float, **fraction)
        self.max_duplicate_paragraph_fraction = self.param(
            "max_duplicate_paragraph_fraction", max_duplicate_paragraph_fraction, float, **fraction)
        self.max_top_2gram_fraction = self.param("max_top_2gram_fraction", max_top_2gram_fraction, float, **fraction)
        self.max_top_3gram_fraction = self.param("max_top_3gram_fraction", max_top_3gram_fraction, float, **fraction)
        self.max_top_4gram_fraction = self.param("max_top_4gram_fraction", max_top_4gram_fraction, float, **fraction)
        self.min_unique_word_ratio = self.param("min_unique_word_ratio", min_unique_word_ratio, float, **fraction)

    def verify(self, row: dict) -> Verdict:
        return self._verdicts([row["completion"]], [row.get("domain") == "code"])[0]

    def __call__(self, batch: pl.DataFrame) -> Decision:
        """verify over the batch, with the words of all its rows numbered together."""
        code = (batch["domain"] == "code").fill_null(False).to_list() if "domain" in batch.columns \
            else [False] * batch.height
        return self.decide(self._verdicts(batch["completion"].to_list(), code))

    def _verdicts(self, completions: list[str | None], is_code: list[bool]) -> list[Verdict]:
        todo = [k for k, c in enumerate(completions) if c is not None]
        signals = dict(zip(todo, readability_signals_batch([completions[k] for k in todo], [is_code[k] for k in todo])))
        # no completion: nothing to read, the format filter owns empty rows
        return [self._verdict(signals[k], code) if k in signals else Verdict(True) for k, code in enumerate(is_code)]

    def check(self, completion: str, is_code_problem: bool = False) -> Verdict:
        """Keep a completion that breaks no rule; else the first rule it breaks."""
        return self._verdict(readability_signals(completion, is_code_problem), is_code_problem)

    def _verdict(self, s: dict, is_code_problem: bool) -> Verdict:
        reason = self._broken_rule(s, is_code_problem)
        return Verdict(reason is None, reason, {
            "readability_longest_paragraph": s["longest_paragraph_chars"],
            "readability_duplicate_lines": s["duplicate_line_fraction"]})

    def _broken_rule(self, s: dict, is_code_problem: bool) -> str | None:
        """The first rule the signals `s` break, with its value; None when they break none."""
        allow_code = is_code_problem if self.allow_code_in_reasoning is None else self.allow_code_in_reasoning
        if s["longest_paragraph_chars"] > self.max_paragraph_chars:
            return f"paragraph of {s['longest_paragraph_chars']:,} chars > {self.max_paragraph_chars:,}"
        if s["code_fences_in_reasoning"] and not allow_code:
            return f"code fence in reasoning ({s['code_fences_in_reasoning']} ```)"
        if s["duplicate_line_fraction"] > self.max_duplicate_line_fraction:
            return f"duplicate lines {s['duplicate_line_fraction']:.2f} > {self.max_duplicate_line_fraction:.2f}"
        if s["duplicate_paragraph_fraction"] > self.max_duplicate_paragraph_fraction:
            return (f"duplicate paragraphs {s['duplicate_paragraph_fraction']:.2f} > "
                    f"{self.max_duplicate_paragraph_fraction:.2f}")
        ngram_limits = {2: self.max_top_2gram_fraction, 3: self.max_top_3gram_fraction, 4: self.max_top_4gram_fraction}
        for n, limit in ngram_limits.items():
            if s[f"top_{n}gram"] > limit:
                return f"top {n}-gram covers {s[f'top_{n}gram']:.2f} > {limit:.2f}"
        if s["unique_word_ratio"] < self.min_unique_word_ratio:
            return f"unique word ratio {s['unique_word_ratio']:.2f} < {self.min_unique_word_ratio:.2f}"
        return None
