"""An LLM judge: the second opinion behind the rule verifiers and the decontamination check.

`Judge` renders a prompt template (prompts/judge.jinja: "are these two answers
equivalent?"; prompts/judge_code_output.jinja: "is this program output an acceptable
answer to this input?"; prompts/same_problem.jinja: "is this the same problem,
rephrased?") and asks a model through generate's backends (vllm, openai, transformers):
one greedy sample per question. The reply's last `[[YES]]` / `[[NO]]` is the verdict; a
reply with neither is "unclear", which never decides anything. Questions are cached by
their rendered prompt, so the k samples of a problem that give the same final answer
cost one call.

A judge is given as a mapping wherever a filter or reward takes one:

    judge: {backend: openai, base_url: http://127.0.0.1:8000/v1, model: judge, sample: 0.05}

The backend starts on the first question (a filter shipped to a worker process carries
only its settings). See docs/ARCHITECTURE.md, "Verification you can trust".
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from curate.errors import CurateError
from curate.filters.base import ParamError

VERDICT = re.compile(r"\[\[\s*(YES|NO)\s*\]\]", re.IGNORECASE)
SETTINGS = {"backend", "model", "base_url", "template", "max_tokens", "sample", "seed", "concurrency",
            "api_key_env", "request_timeout", "max_retries", "max_model_len", "kv_cache_gb", "dtype"}
ENGINE_KEYS = {"base_url", "concurrency", "api_key_env", "max_retries", "max_model_len", "kv_cache_gb", "dtype"}


@dataclass(frozen=True)
class JudgeAnswer:
    """What the judge said: `verdict` "yes" / "no" / "unclear", and its whole reply."""

    verdict: str
    text: str

    @property
    def decided(self) -> bool:
        return self.verdict in ("yes", "no")


def read_verdict(reply: str | None) -> str:
    """"yes" / "no" from the reply's last [[YES]] / [[NO]]; "unclear" without one."""
    found = VERDICT.findall(reply or "")
    return found[-1].lower() if found else "unclear"


def sampled(key: str, fraction: float, seed: int = 0) -> bool:
    """A stable coin: the same key is in the sample every time (audits resume and repeat)."""
    if fraction <= 0:
        return False
    if fraction >= 1:
        return True
    digest = hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


class Judge:
    """Ask a model yes/no questions through a template; see the module docstring."""

    def __init__(self, backend: str = "openai", model: str | None = None, template: str = "judge",
                 max_tokens: int = 512, sample: float = 0.0, seed: int = 0, **engine):
        from curate.templates import load_template

        if backend not in ("vllm", "openai", "transformers"):
            raise CurateError(f"judge: backend must be vllm, openai or transformers, not {backend!r}")
        if not isinstance(sample, (int, float)) or not 0 <= sample <= 1:
            raise CurateError(f"judge: sample must be a fraction between 0 and 1, got {sample!r}")
        unknown = set(engine) - ENGINE_KEYS - {"request_timeout"}
        if unknown:
            raise CurateError(f"judge: unknown setting {', '.join(sorted(unknown))}; "
                              f"expected some of {', '.join(sorted(SETTINGS))}")
        self.backend_name, self.model = backend, model
        self.template = load_template(template)
        self._compiled = self.template.compile()  # once: every question renders through it
        self.max_tokens, self.sample, self.seed = int(max_tokens), float(sample), int(seed)
        self.engine = {("timeout" if k == "request_timeout" else k): v for k, v in engine.items()}
        self.calls = 0  # questions sent to the model (cache misses)
        self._backend = None
        self._cache: dict[str, JudgeAnswer] = {}
        self._others: dict = {}  # other templates asked through the same engine (ask's `template`)

    @classmethod
    def from_spec(cls, spec, where: str, **defaults) -> Judge:
        """A Judge from a filter's or reward's `judge:` mapping; errors name `where`."""
        if isinstance(spec, Judge):
            return spec
        if not isinstance(spec, dict):
            raise CurateError(f"{where}: judge must be a mapping such as "
                              "{backend: openai, base_url: http://127.0.0.1:8000/v1, model: NAME}")
        unknown = set(spec) - SETTINGS
        if unknown:
            raise CurateError(f"{where}: judge: unknown setting {', '.join(sorted(unknown))}; "
                              f"expected some of {', '.join(sorted(SETTINGS))}")
        try:
            return cls(**{**defaults, **spec})
        except CurateError as e:
            raise CurateError(f"{where}: {e}") from None

    def settings(self) -> dict:
        """What the manifest records (no key, no engine object)."""
        return {"backend": self.backend_name, "model": self.model or "embedded", "template": self.template.name,
                "template_sha256": self.template.sha, "max_tokens": self.max_tokens, "sample": self.sample,
                **{k: v for k, v in self.engine.items() if k == "base_url"}}

    # -- asking ------------------------------------------------------------------------

    def ask(self, questions: list[dict], template: str | None = None) -> list[JudgeAnswer]:
        """One answer per question (a dict of the template's variables), in order.
        `template`: another template than the judge's own, through the same engine (the
        accuracy reward asks maths and code-output questions of one judge)."""
        from curate.backends.base import Request

        chosen, compiled = self._template(template)
        prompts = [chosen.render(q, compiled) for q in questions]
        keys = [hashlib.sha256(json.dumps(p, sort_keys=True).encode()).hexdigest() for p in prompts]
        todo = {k: p for k, p in zip(keys, prompts) if k not in self._cache}
        if todo:
            backend = self._start()
            requests = [Request(key=k, prompt=p, sample_indices=[0], seed=self.seed) for k, p in todo.items()]
            for request, samples in backend.run(requests):
                text = samples[0].text if samples else None
                self._cache[request.key] = JudgeAnswer(read_verdict(text), text or "")
                self.calls += 1
            for k in todo:  # a request the backend gave up on is unclear, not a crash
                self._cache.setdefault(k, JudgeAnswer("unclear", ""))
        return [self._cache[k] for k in keys]

    def _template(self, name: str | None):
        if name is None or name == self.template.name:
            return self.template, self._compiled
        if name not in self._others:
            from curate.templates import load_template

            other = load_template(name)
            if other.stop != self.template.stop:  # the engine's sampling carries one template's stops
                raise CurateError(f"judge: template {other.name} stops at {other.stop}, "
                                  f"the judge's template {self.template.name} at {self.template.stop}")
            self._others[name] = (other, other.compile())
        return self._others[name]

    def _start(self):
        if self._backend is None:
            from curate.backends import make_backend
            from curate.backends.base import Sampling

            model = self.model
            if not model and self.backend_name in ("vllm", "transformers"):
                from curate.embedded import embedded_model_dir

                model = str(embedded_model_dir(log=lambda *_: None))
            if not model:
                raise CurateError("judge: the openai backend needs a model (the served name)")
            sampling = Sampling(n=1, temperature=0.0, top_p=1.0, max_tokens=self.max_tokens, seed=self.seed,
                                stop=tuple(self.template.stop))
            self._backend = make_backend(self.backend_name, model, sampling, dict(self.engine))
        return self._backend

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def __getstate__(self) -> dict:  # a worker gets the settings and starts its own engine
        return {**self.__dict__, "_backend": None, "_cache": {}, "_compiled": None, "_others": {}}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._compiled = self.template.compile()


# -- the cascade: rules first, the judge for what they cannot decide ---------------------

JUDGE_SCORES = ("judge_verdict", "verdict_by")


class Judged:
    """For a filter with an optional LLM judge in `self._judge` (math, code, decontam):
    the judge's settings in the manifest, its calls counted as work, closed with the filter."""

    _judge: Judge | None = None

    def manifest_info(self) -> dict:
        return {"judge": self._judge.settings()} if self._judge is not None else {}

    def work_counts(self) -> dict[str, int]:
        return {"judge_calls": self._judge.calls} if self._judge is not None else {}

    def close(self) -> None:
        if self._judge is not None:
            self._judge.close()


def cascade_judge(f, mode: str, judge: dict | None, **defaults) -> Judge | None:
    """A filter's `mode` and `judge` parameters, checked: its Judge in cascade mode, else
    None. `f.mode` and `f.judge` are set in cascade mode only, so a rules-only filter's
    params (and its chain's config fingerprint) stay as they were."""
    mode = f.param("mode", mode, str, choices=("rules", "cascade"))
    judge = f.param("judge", judge, dict, optional=True)
    if mode != "cascade":
        if judge is not None:
            raise ParamError(f"filter {f.name}: parameter judge needs mode: cascade", "judge")
        return None
    if judge is None:
        raise CurateError(f"filter {f.name}: mode cascade needs a judge, e.g. "
                          "judge: {backend: openai, base_url: http://127.0.0.1:8000/v1, model: NAME}")
    f.mode, f.judge = mode, judge
    try:
        return Judge.from_spec(judge, f"filter {f.name}", **defaults)
    except CurateError as e:  # a bad judge setting: the chain points at `judge:`
        raise ParamError(str(e), "judge") from None


def cascade(judge: Judge, questions: list, verdicts: list, undecided: tuple[str, ...], keys: list[str], *,
            status: str = "math_status", template: str | None = None,
            rejected: str = "judged not equivalent") -> list:
    """The rule verifier's verdicts, with the judge's second opinion.

    A row whose rule status (the score `status`) is in `undecided` (maths: no answer
    read, a reference the rules cannot parse, a timeout, an error; code: outputs that
    differ from the expected ones) and that has a question is decided by the judge:
    "yes" keeps it, "no" drops it (reason: `rejected`), "unclear" leaves the rule's
    verdict. A question is a dict of the template's variables, or a list of them that
    must all be answered "yes" (one per mismatching test case: any "no" is "no", any
    "unclear" leaves the rules' verdict); None when there is nothing to ask. A decided
    row is also asked when its key falls in the judge's `sample`, for `curate audit`;
    its verdict stays the rule's. Both verdicts are in the scores: `judge_verdict`
    (yes / no / unclear, null when not asked) and `verdict_by` (rules / judge)."""
    from curate.filters.base import Verdict

    asked = [i for i, (q, v, k) in enumerate(zip(questions, verdicts, keys))
             if q and (v.scores.get(status, v.reason) in undecided or sampled(k, judge.sample, judge.seed))]
    groups = {i: questions[i] if isinstance(questions[i], list) else [questions[i]] for i in asked}
    flat = judge.ask([q for i in asked for q in groups[i]], template) if asked else []
    answers, at = {}, 0
    for i in asked:
        found = {a.verdict for a in flat[at : at + len(groups[i])]}
        at += len(groups[i])
        answers[i] = "no" if "no" in found else "unclear" if "unclear" in found else "yes"
    out = []
    for i, v in enumerate(verdicts):
        a = answers.get(i)
        scores = {**v.scores, "judge_verdict": a, "verdict_by": "rules"}
        rule_status = v.scores.get(status)
        if a in ("yes", "no") and rule_status in undecided:
            scores["verdict_by"] = "judge"
            keep = a == "yes"
            reason = None if keep else f"{rejected} ({v.reason or rule_status})"
            out.append(Verdict(keep, reason, scores))
        else:
            out.append(Verdict(v.keep, v.reason, scores))
    return out
