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
- Methods (`METHODS`), combinable as `ngram+embed+llm`: `NgramOverlap` (open-r1's, n = 8)
  catches verbatim and lightly edited copies; `Similar` (`embed`) the nearest benchmark
  items by character-n-gram TF-IDF (or a local encoder) that state the same numbers;
  `Rephrased` (`llm`) asks an LLM judge (filters/judge.py) about the nearest items.
  Recall and false positives per method: BENCHMARKS.md, "Decontamination per method".
- `Decontam`: the filter. It indexes the benchmarks on first use; `check_many(problems)`
  decides each distinct problem of a batch once (samples share problems), the methods in
  order, the first match deciding.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import polars as pl

from curate.errors import CurateError
from curate.filters.base import Decision, ParamError, RowFilter, Verdict
from curate.filters.judge import Judge, Judged
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
SHIPPED = {"math500": ("MATH-500", "math500_problems.jsonl"), "gsm8k": ("GSM8K", "gsm8k_test.jsonl")}
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


# -- paraphrase-robust: nearest neighbours, then an optional LLM judge -------------------

DIM = 1 << 20  # hashed character n-gram features
_MIX = np.uint64(1099511628211)
NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split())}
NUMBER_WORDS.update(twice="2", double="2", half="2", triple="3")


def char_grams(text: str, sizes: tuple[int, ...] = (3, 4, 5)) -> np.ndarray:
    """Hashed character n-grams of the normalised words (each in [0, DIM)), vectorised."""
    s = " " + " ".join(words(text)) + " "
    codes = np.frombuffer(s.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    out = []
    for n in sizes:
        if len(codes) < n:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(codes, n)
        with np.errstate(over="ignore"):
            h = (windows * _MIX ** np.arange(n, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)
            h += np.uint64(n) * np.uint64(0x9E3779B97F4A7C15)
        out.append(h % np.uint64(DIM))
    return np.concatenate(out) if out else np.zeros(0, np.uint64)


def numbers(text: str) -> Counter:
    """The numbers a problem states (digits, and the small number words), as a multiset."""
    return Counter(NUMBER_WORDS.get(w, w) for w in words(text) if w.isdigit() or w in NUMBER_WORDS)


def numbers_overlap(a: Counter, b: Counter) -> float:
    """Jaccard of two number multisets; 1.0 when neither states a number."""
    if not a and not b:
        return 1.0
    return sum((a & b).values()) / sum((a | b).values())


class Similar:
    """`embed`: a problem is a rephrased benchmark item when one of its `top_k` nearest
    benchmark problems has cosine similarity >= `threshold` and states the same numbers
    (multiset Jaccard >= `numbers`): a rephrasing keeps the problem's numbers, while a
    different problem of the same kind (same template, other numbers) does not. A
    problem with 3+ numbers nearly all shared needs 0.2 less similarity (`rephrased`).

    Vectors: character 3-5-gram TF-IDF of the normalised words (hashed, idf from the
    benchmarks), or, with `embed_model` (a local Hugging Face encoder folder), its mean-pooled
    last hidden states. Evidence: the nearest item, its similarity and numbers overlap."""

    def __init__(self, threshold: float = 0.5, numbers: float = 0.6, top_k: int = 5, embed_model: str | None = None):
        self.threshold, self.numbers, self.top_k, self.model = threshold, numbers, top_k, embed_model
        self._items: list[tuple[str, int, str]] = []  # (benchmark, index in it, text)
        self._vectors = None
        self._idf = None
        self._numbers: list[Counter] = []
        self._encoder = None

    def index(self, benchmarks: list[Benchmark]) -> None:
        self._items = [(b.name, i, t) for b in benchmarks for i, t in enumerate(b.problems)]
        texts = [t for _, _, t in self._items]
        self._numbers = [numbers(t) for t in texts]
        if self.model is None:
            counts = self._counts(texts)
            df = np.asarray((counts > 0).sum(axis=0)).ravel()
            self._idf = np.log((1 + len(texts)) / (1 + df)) + 1
        self._vectors = self.vectors(texts)

    def _counts(self, texts: list[str]):
        import scipy.sparse as sp

        rows, cols, vals = [], [], []
        for i, t in enumerate(texts):
            u, c = np.unique(char_grams(t), return_counts=True)
            rows.append(np.full(len(u), i))
            cols.append(u.astype(np.int64))
            vals.append(1 + np.log(c))
        if not texts:
            return sp.csr_matrix((0, DIM))
        return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(len(texts), DIM))

    def vectors(self, texts: list[str]):
        """Unit vectors, one row per text (scipy sparse for TF-IDF, numpy for a model)."""
        if self.model is not None:
            return self._encode(texts)
        import scipy.sparse as sp

        x = self._counts(texts).multiply(self._idf).tocsr()
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return sp.diags(1.0 / norms) @ x

    def _encode(self, texts: list[str], batch: int = 32) -> np.ndarray:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if self._encoder is None:
            try:
                tokenizer = AutoTokenizer.from_pretrained(self.model)
                model = AutoModel.from_pretrained(self.model).eval()
            except OSError as e:
                raise CurateError(f"filter decontam: embed_model {self.model}: {str(e).splitlines()[0]}") from None
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            self._encoder = (tokenizer, model)
        tokenizer, model = self._encoder
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch):
                enc = tokenizer(texts[i:i + batch], padding=True, truncation=True, max_length=512, return_tensors="pt")
                hidden = model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
                out.append(torch.nn.functional.normalize(pooled.float(), dim=-1).numpy())
        return np.concatenate(out) if out else np.zeros((0, 1), np.float32)

    def neighbours(self, problems: list[str], chunk: int = 4096) -> list[list[tuple[int, float, float]]]:
        """Per problem, its `top_k` nearest benchmark items: (item, similarity, numbers overlap), best first."""
        found: list[list[tuple[int, float, float]]] = []
        k = min(self.top_k, len(self._items))
        for start in range(0, len(problems), chunk):
            part = problems[start:start + chunk]
            sims = self.vectors(part) @ self._vectors.T
            sims = sims.toarray() if hasattr(sims, "toarray") else np.asarray(sims)
            if k == 0:
                found.extend([] for _ in part)
                continue
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            for row, problem in enumerate(part):
                order = top[row][np.argsort(-sims[row, top[row]], kind="stable")]
                nums = numbers(problem)
                found.append([(int(j), float(sims[row, j]), numbers_overlap(nums, self._numbers[j])) for j in order])
        return found

    def item(self, j: int) -> tuple[str, int, str]:
        return self._items[j]

    def evidence(self, j: int, sim: float, overlap: float) -> str:
        bench, i, text = self._items[j]
        short = text if len(text) <= 80 else text[:79] + "…"
        return f"{bench} item {i}, cosine {sim:.2f}, numbers {overlap:.2f}: '{short}'"

    # A problem that states at least STRONG_COUNT numbers, nearly all of them the item's
    # (overlap >= STRONG_OVERLAP), needs STRONG_MARGIN less similarity: restructured
    # rephrasings keep the numbers and lose the wording (BENCHMARKS.md, "Decontamination").
    STRONG_COUNT, STRONG_OVERLAP, STRONG_MARGIN = 3, 0.75, 0.2

    def rephrased(self, problem_numbers: int, sim: float, overlap: float) -> bool:
        if sim >= self.threshold and overlap >= self.numbers:
            return True
        return (problem_numbers >= self.STRONG_COUNT and overlap >= max(self.numbers, self.STRONG_OVERLAP)
                and sim >= self.threshold - self.STRONG_MARGIN)

    def match_many(self, problems: list[str]) -> list[tuple[str, str] | None]:
        out = []
        for problem, near in zip(problems, self.neighbours(problems)):
            count = sum(numbers(problem).values())
            hit = next(((j, s, o) for j, s, o in near if self.rephrased(count, s, o)), None)
            out.append((self._items[hit[0]][0], self.evidence(*hit)) if hit else None)
        return out


class Rephrased:
    """`llm`: the nearest benchmark items with similarity >= `candidates` (at most
    `ask` per problem) go to an LLM judge (prompts/same_problem.jinja): "is this the same
    problem, rephrased?" — LLM-decontaminator's recipe. A "yes" is contamination; the
    evidence names the item, the similarity and the judge's answer."""

    def __init__(self, similar: Similar, judge, candidates: float = 0.3, ask: int = 2):
        self.similar, self.judge, self.candidates, self.ask = similar, judge, candidates, ask

    def match_many(self, problems: list[str]) -> list[tuple[str, str] | None]:
        pairs = [(p, j, s, o) for p, near in zip(range(len(problems)), self.similar.neighbours(problems))
                 for j, s, o in near[: self.ask] if s >= self.candidates]
        answers = self.judge.ask([{"problem": problems[p], "benchmark_problem": self.similar.item(j)[2]}
                                  for p, j, _, _ in pairs]) if pairs else []
        out: list[tuple[str, str] | None] = [None] * len(problems)
        for (p, j, s, o), a in zip(pairs, answers):
            if out[p] is None and a.verdict == "yes":
                out[p] = (self.similar.item(j)[0], f"judge: same problem; {self.similar.evidence(j, s, o)}")
        return out


METHODS = ("ngram", "embed", "llm")


def contaminated(hit: tuple[str, str], n: int) -> str:
    """The reason: benchmark, what kind of match, and the shared words."""
    bench, evidence = hit
    kind = f"{n}-gram" if len(evidence.split(" ")) >= n else "whole problem"
    return f"contaminated: {bench} {kind} '{evidence}'"


class Decontam(Judged, RowFilter):
    """Drop problems that overlap a benchmark: `method` is one of ngram, embed, llm or
    several joined by "+" (tried in that order; the first that finds a match decides)."""

    name = "decontam"
    needs = ("problem",)
    scores = {"decontam_benchmark": pl.String}

    def __init__(self, benchmarks: list | None = None, n: int = 8, method: str = "ngram", min_informative: int = 3,
                 threshold: float | None = None, numbers: float | None = None, top_k: int | None = None,
                 embed_model: str | None = None, candidates: float | None = None, ask: int | None = None,
                 judge: dict | None = None):
        self.benchmarks = self.param("benchmarks", benchmarks if benchmarks is not None else ["math500"], list)
        if not self.benchmarks:
            raise ParamError("filter decontam: parameter benchmarks must name at least one benchmark", "benchmarks")
        self.n = self.param("n", n, int, minimum=1)
        self.min_informative = self.param("min_informative", min_informative, int, minimum=0)
        self.method = self.param("method", method, str)
        methods = [m.strip() for m in self.method.split("+")]
        bad = [m for m in methods if m not in METHODS]
        if bad or len(set(methods)) != len(methods):
            raise ParamError(f"filter decontam: parameter method must be one or more of {', '.join(METHODS)} "
                             f"joined by '+' (e.g. ngram+embed+llm), got {method!r}", "method")
        self._methods = [m for m in METHODS if m in methods]
        # the nearest-neighbour settings are parameters only for the methods that use them
        # (an ngram chain keeps its config fingerprint)
        given = {"threshold": threshold, "numbers": numbers, "top_k": top_k, "embed_model": embed_model,
                 "candidates": candidates, "ask": ask, "judge": judge}
        uses = set()
        if "embed" in methods or "llm" in methods:
            uses |= {"top_k", "embed_model"}
        if "embed" in methods:
            uses |= {"threshold", "numbers"}
        if "llm" in methods:
            uses |= {"candidates", "ask", "judge"}
        unused = [k for k, v in given.items() if v is not None and k not in uses]
        if unused:
            raise ParamError(f"filter decontam: parameter {unused[0]} is not used by method {self.method}", unused[0])
        kinds = {"threshold": (float, 0.0, 1.0), "numbers": (float, 0.0, 1.0), "top_k": (int, 1, None),
                 "embed_model": (str, None, None), "candidates": (float, 0.0, 1.0), "ask": (int, 1, None),
                 "judge": (dict, None, None)}
        shared_judge = judge if isinstance(judge, Judge) else None  # from Python: a judge already started
        if shared_judge is not None:
            given["judge"] = judge = shared_judge.settings()
        for key in sorted(uses):
            kind, low, high = kinds[key]
            value = self.param(key, given[key], kind, minimum=low, maximum=high, optional=True)
            if value is not None:
                setattr(self, key, value)
        if "llm" in methods and judge is None:
            raise CurateError("filter decontam: method llm needs a judge, e.g. "
                              "judge: {backend: openai, base_url: http://127.0.0.1:8000/v1, model: NAME}")
        self._judge = shared_judge or (Judge.from_spec(judge, "filter decontam", template="same_problem",
                                                       max_tokens=256) if "llm" in methods else None)
        # loaded now, when the chain is planned: a missing file or an unreachable Hub
        # benchmark is refused before anything is written
        self._loaded = [Benchmark.load(spec) for spec in self.benchmarks]
        self._matchers = None

    def index_benchmarks(self) -> None:
        """Index the benchmarks (done on first use in each process otherwise)."""
        matchers = []
        if "ngram" in self._methods:
            ngram = NgramOverlap(n=self.n, min_informative=self.min_informative)
            ngram.index(self._loaded)
            matchers.append(("ngram", lambda problems, m=ngram: [m.match(p) for p in problems]))
        if "embed" in self._methods or "llm" in self._methods:
            similar = Similar(**self._given("threshold", "numbers", "top_k", "embed_model"))
            similar.index(self._loaded)
            if "embed" in self._methods:
                matchers.append(("embed", similar.match_many))
            if "llm" in self._methods:
                rephrased = Rephrased(similar, self._judge, **self._given("candidates", "ask"))
                matchers.append(("llm", rephrased.match_many))
        self._matchers = matchers

    def _given(self, *keys: str) -> dict:
        """The method settings the user gave (the methods' own defaults stand for the rest)."""
        return {k: getattr(self, k) for k in keys if hasattr(self, k)}

    def check_many(self, problems: list[str | None]) -> list[Verdict]:
        """One verdict per problem: the first method (ngram, embed, llm) that finds it in a
        benchmark drops it, naming the benchmark and the evidence."""
        if self._matchers is None:
            self.index_benchmarks()
        verdicts: list[Verdict] = [Verdict(True) for _ in problems]
        todo = [i for i, p in enumerate(problems) if p is not None]
        for method, match in self._matchers:
            if not todo:
                break
            hits = match([problems[i] for i in todo])
            for i, hit in zip(todo, hits):
                if hit is not None:
                    reason = (contaminated(hit, self.n) if method == "ngram"
                              else f"contaminated: {hit[0]} rephrased ({hit[1]})")
                    verdicts[i] = Verdict(False, reason, {"decontam_benchmark": hit[0]})
            todo = [i for i, hit in zip(todo, hits) if hit is None]
        return verdicts

    def check(self, problem: str | None) -> Verdict:
        """Drop a problem that overlaps a benchmark, naming it and the evidence."""
        return self.check_many([problem])[0]

    def verify(self, row: dict) -> Verdict:
        return self.check(row["problem"])

    def __call__(self, batch: pl.DataFrame) -> Decision:
        problems = batch["problem"].cast(pl.String).to_list()
        distinct = list(dict.fromkeys(problems))  # samples share problems: each is checked once
        verdicts = dict(zip(distinct, self.check_many(distinct)))
        return self.decide([verdicts[p] for p in problems])

    def manifest_info(self) -> dict:
        return {"methods": self._methods, **super().manifest_info()}

    def __getstate__(self) -> dict:  # a worker rebuilds the index (closures do not pickle)
        return {**self.__dict__, "_matchers": None}
