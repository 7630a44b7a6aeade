"""Decontamination: drop training problems that overlap a benchmark.

The pure function is `ngrams(text, n)`: the set of word n-grams of a normalised problem.
Words are what is left after NFKC and lowercasing: runs of letters/digits (`\\w+`) and
LaTeX commands, which stay one token with their backslash (`\\frac`, `\\theta`), so a
command never collides with the plain word (`\\pi` is not "pi"). Everything else
(punctuation, `$`, braces, operators) separates tokens and is dropped, so
"the point $(0,3)$ in" reads "the point 0 3 in" whatever the LaTeX spacing.

A text shorter than n words has one "n-gram": its whole word sequence. So a short
training problem is caught only when it equals a short benchmark problem word for word,
and a benchmark problem shorter than n words is never found inside a longer problem.

A shared n-gram counts only when it holds at least `min_informative` informative words:
not a stop word of `STOP_WORDS` (function words and the stock vocabulary of word
problems: "what is the total amount of money he"), not a number, not a LaTeX command,
not a single letter. So boilerplate and number runs ("1, 2, 3, 4, 5, 6, 7, 8") do not
flag on their own; a whole-problem match (a short problem equal to a benchmark's) always
counts.

Pieces, read top to bottom:

- `Benchmark`: a name and a list of problem texts, loaded from a local file
  (.jsonl / .json / .parquet with a problem / question / prompt column) or from the Hub
  by `datasets.load_dataset` (imported only then). A file is named by the name given
  (`Name=path`, `{name, path}`), else by its stem unless that is a split or shard name
  (`test.jsonl`, `data/test-00000-of-00001.parquet`): then by its folder. Aliases: math500, aime24, aime25,
  gpqa_diamond, livecodebench. Offline, a Hub benchmark fails with one line that names
  it and suggests a local file.
- Methods, registered by name in `METHODS`. A method has `index(benchmarks)` and
  `match(problem) -> (benchmark name, evidence) | None`. `NgramOverlap` (open-r1's
  method, n = 8) is the one shipped; it catches verbatim and lightly edited copies but
  only ~4% of LLM-rephrased items (docs/ARCHITECTURE.md), so a paraphrase-robust method (embedding
  similarity, an LLM judge) is meant to register beside it under its own name.
- `Decontam`: the filter. It indexes the benchmarks on its first batch in each process;
  `check(problem) -> Verdict` decides one problem, once per distinct problem of a batch
  (samples share problems).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import polars as pl

from curate.errors import CurateError
from curate.filters.base import Decision, RowFilter, Verdict
from curate.store import is_hub_name, open_table

WORD = re.compile(r"\\[a-z]+|\w+")

# alias -> (display name, Hub repo, config, split, problem column)
HUB = {
    "math500": ("MATH-500", "HuggingFaceH4/MATH-500", None, "test", "problem"),
    "aime24": ("AIME 2024", "HuggingFaceH4/aime_2024", None, "train", "problem"),
    "aime25": ("AIME 2025", "yentinglin/aime_2025", None, "train", "problem"),
    "gpqa_diamond": ("GPQA-Diamond", "Idavidrein/gpqa", "gpqa_diamond", "train", "Question"),
    "livecodebench": ("LiveCodeBench", "livecodebench/code_generation_lite", None, "test", "question_content"),
}
# benchmarks shipped with curate (curate/data, MIT): no Hub needed
SHIPPED = {"math500": ("MATH-500", "math500_problems.jsonl")}
PROBLEM_COLUMNS = ("problem", "question", "prompt", "Problem", "Question", "question_content")
# file stems that name a split or a shard, not a benchmark: such a file is named by its folder
GENERIC_STEM = re.compile(r"^(test|train|validation|valid|val|dev|eval|data|default|problems|questions|"
                          r"benchmark|all|part|(test|train|validation)[-_]\d+[-_]of[-_]\d+|part[-_]\d+)$")
# words that say nothing about which problem a text is: function words and the stock
# vocabulary of word problems; an n-gram of these (and numbers) alone is no evidence
STOP_WORDS = frozenset("""
a an the and or but if then else so as of in on at to for from by with without into onto over under
about after before between during through per than that this these those there here it its it's
is are was were be been being am do does did done has have had having will would shall should can
could may might must not no yes all any each every some many much more most less least few several
other another same such only own also just very too again once both either neither
i you he she we they me him her us them my your his our their mine yours what which who whom whose
when where why how whether
find compute calculate determine evaluate simplify solve show prove express give write let suppose
given assume answer question problem value values number numbers total sum amount money cost costs
price dollars cents time times day days week weeks month months year years hour hours minute minutes
second seconds buy buys bought sell sells sold pay pays paid spend spends spent get gets got make
makes made take takes took left remaining each first second third last next half twice
""".split())


def words(text: str) -> list[str]:
    """NFKC, lowercase, then words and LaTeX commands (see the module docstring)."""
    return WORD.findall(unicodedata.normalize("NFKC", text).lower())


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """Word n-grams of the normalised text; a shorter text gives its whole word tuple."""
    w = words(text)
    if len(w) < n:
        return {tuple(w)} if w else set()
    return set(zip(*(w[i:] for i in range(n))))


@dataclass
class Benchmark:
    name: str
    problems: list[str]

    @classmethod
    def load(cls, spec: str | dict) -> Benchmark:
        """`spec`: an alias (math500, aime24, ...), a Hub repo ("owner/name"), a local
        file path, "Name=path" to name a local file, or {"name", "path", "column"}."""
        if isinstance(spec, dict):
            return cls.from_file(spec["path"], spec.get("name"), spec.get("column"))
        if spec in SHIPPED:  # works offline
            return cls.from_file(str(resources.files("curate.data") / SHIPPED[spec][1]), SHIPPED[spec][0])
        if spec in HUB:
            name, repo, config, split, column = HUB[spec]
            return cls.from_hub(name, repo, config, split, column)
        if Path(spec).exists():
            return cls.from_file(spec)
        if "=" in spec:
            name, path = spec.split("=", 1)
            return cls.from_file(path, name)
        if "/" in spec and is_hub_name(spec):  # owner/name: a bare word is a mistyped alias, not a Hub name
            return cls.from_hub(spec, spec, None, None, None)
        raise CurateError(
            f"filter decontam: benchmark {spec!r} is neither a known name ({', '.join(HUB)}), "
            "a local .jsonl/.json/.parquet file, nor a Hub repo"
        )

    @classmethod
    def from_file(cls, path: str, name: str | None = None, column: str | None = None) -> Benchmark:
        p = Path(path)
        if not p.is_file():
            raise CurateError(f"filter decontam: benchmark file {path} does not exist")
        if p.suffix.lower() not in (".jsonl", ".ndjson", ".json", ".parquet"):
            raise CurateError(f"filter decontam: benchmark file {path}: expected .jsonl, .json or .parquet")
        try:
            frame = open_table(p).read()
        except CurateError as e:
            raise CurateError(f"filter decontam: benchmark file {e}") from None
        return cls(name or file_name(p), problem_texts(frame.columns, frame.get_column, column, path))

    @classmethod
    def from_hub(cls, name: str, repo: str, config: str | None, split: str | None, column: str | None) -> Benchmark:
        from curate.inputs import read_hub

        try:
            table, _ = read_hub(repo, split, config)
        except CurateError as e:  # offline, gated, renamed: one line the user can act on
            file = re.sub(r"\W+", "_", name.lower()).strip("_")
            raise CurateError(f"filter decontam: benchmark {name}: {e}; "
                              f"e.g. benchmarks: [\"{name}={file}.jsonl\"]") from None
        return cls(name, problem_texts(table.column_names, lambda c: table.column(c).to_pylist(), column, repo))


def file_name(path: Path) -> str:
    """A benchmark file's name: its stem, or, for a split or shard name (test.jsonl,
    test-00000-of-00001.parquet), the nearest folder that is not one."""
    p = path.resolve()
    for part in (p.stem, *(q.name for q in p.parents)):
        if part and not GENERIC_STEM.match(part.lower()):
            return part
    return p.stem


def informative(gram: tuple[str, ...]) -> int:
    """How many distinct words of an n-gram say which problem it is from: not stop
    words, numbers, LaTeX commands or single letters."""
    return len({w for w in gram if len(w) > 1 and not w.isdigit() and not w.startswith("\\") and w not in STOP_WORDS})


def problem_texts(columns: list[str], get, column: str | None, where: str) -> list[str]:
    """The problem column of a benchmark table: `column`, or the first usual name."""
    found = column if column in columns else next((c for c in PROBLEM_COLUMNS if c in columns), None)
    if found is None:
        raise CurateError(f"filter decontam: {where} has no problem column ({', '.join(PROBLEM_COLUMNS)})")
    return [t for t in get(found) if isinstance(t, str)]


class NgramOverlap:
    """A problem is contaminated when it shares one word n-gram with a benchmark problem
    (open-r1's decontamination, n = 8) that holds at least `min_informative` informative
    words, or equals a short benchmark problem. Evidence: the first such n-gram, in the
    problem's word order."""

    def __init__(self, n: int = 8, min_informative: int = 3):
        self.n = n
        self.min_informative = min(min_informative, n)
        self._owner: dict[tuple[str, ...], str] = {}  # n-gram -> first benchmark holding it

    def index(self, benchmarks: list[Benchmark]) -> None:
        for bench in benchmarks:
            for problem in bench.problems:
                for gram in ngrams(problem, self.n):
                    self._owner.setdefault(gram, bench.name)

    def match(self, problem: str) -> tuple[str, str] | None:
        w = words(problem)
        grams = [tuple(w)] if len(w) < self.n else zip(*(w[i:] for i in range(self.n)))
        for gram in grams:
            if gram in self._owner and (len(gram) < self.n or informative(gram) >= self.min_informative):
                return self._owner[gram], " ".join(gram)
        return None


METHODS = {"ngram": NgramOverlap}


def contaminated(hit: tuple[str, str], n: int) -> str:
    """The reason: benchmark, what kind of match, and the shared words."""
    bench, evidence = hit
    kind = f"{n}-gram" if len(evidence.split(" ")) >= n else "whole problem"
    return f"contaminated: {bench} {kind} '{evidence}'"


class Decontam(RowFilter):
    name = "decontam"
    needs = ("problem",)
    scores = {"decontam_benchmark": pl.String}

    def __init__(self, benchmarks: list | None = None, n: int = 8, method: str = "ngram", min_informative: int = 3):
        self.benchmarks = self.param("benchmarks", benchmarks if benchmarks is not None else ["math500"], list)
        if not self.benchmarks:
            raise CurateError("filter decontam: parameter benchmarks must name at least one benchmark")
        self.n = self.param("n", n, int, minimum=1)
        self.min_informative = self.param("min_informative", min_informative, int, minimum=0)
        self.method = self.param("method", method, str, choices=tuple(METHODS))
        # loaded now, when the chain is planned: a missing file or an unreachable Hub
        # benchmark is refused before anything is written
        self._loaded = [Benchmark.load(spec) for spec in self.benchmarks]
        self._matcher = None

    def _index_benchmarks(self) -> None:
        matcher = METHODS[self.method](n=self.n, min_informative=self.min_informative)
        matcher.index(self._loaded)
        self._matcher = matcher

    def check(self, problem: str | None) -> Verdict:
        """Drop a problem that overlaps a benchmark, naming it and the shared words."""
        if self._matcher is None:
            self._index_benchmarks()
        hit = self._matcher.match(problem) if problem is not None else None
        if hit is None:
            return Verdict(True)
        return Verdict(False, contaminated(hit, self.n), {"decontam_benchmark": hit[0]})

    def verify(self, row: dict) -> Verdict:
        return self.check(row["problem"])

    def __call__(self, batch: pl.DataFrame) -> Decision:
        problems = batch["problem"].cast(pl.String).to_list()
        verdicts = {p: self.check(p) for p in set(problems)}
        return self.decide([verdicts[p] for p in problems])
