"""transformers `generate`: the fallback where vLLM is absent. Slow; for tiny jobs.

Prompts are batched (left padding), each batch generating n samples per prompt
(`num_return_sequences`). Sampling is seeded per batch from the first request's seed,
so a resumed run is reproducible only where batches line up; use vLLM or a server
when sample-exact resumes matter.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import groupby, islice

from curate.backends.base import Backend, Request, Sample, prompt_text


class TransformersBackend(Backend):
    name = "transformers"

    def __post_init__(self):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.device = self.options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = self.options.get("dtype") or ("bfloat16" if self.device == "cuda" else "float32")
        self.tokenizer = AutoTokenizer.from_pretrained(self.model)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.hf = AutoModelForCausalLM.from_pretrained(self.model, dtype=getattr(torch, dtype)).to(self.device).eval()
        self.batch_size = int(self.options.get("batch_size") or 8)

    def describe(self) -> dict:
        import transformers

        return {"backend": self.name, "model": self.model, "transformers": transformers.__version__,
                "device": self.device}

    def validate(self, prompt: str | list[dict]) -> None:
        prompt_text(self.tokenizer, prompt, self.model)

    def run(self, requests: Iterable[Request]) -> Iterator[tuple[Request, list[Sample]]]:
        it = iter(requests)
        while batch := list(islice(it, self.batch_size)):
            # one generate call per distinct n (num_return_sequences is per call)
            for _, group in groupby(sorted(batch, key=lambda r: r.n), key=lambda r: r.n):
                yield from self._generate(list(group))

    def _generate(self, batch: list[Request]) -> Iterator[tuple[Request, list[Sample]]]:
        torch, s, tok = self.torch, self.sampling, self.tokenizer
        texts = [prompt_text(tok, r.prompt, self.model) for r in batch]
        special = texts[0][1]
        enc = tok([t for t, _ in texts], return_tensors="pt", padding=True, add_special_tokens=special).to(self.device)
        n = batch[0].n
        if batch[0].seed is not None:
            torch.manual_seed(batch[0].seed)
        sample = s.temperature > 0
        with torch.no_grad():
            out = self.hf.generate(
                **enc,
                max_new_tokens=s.max_tokens,
                do_sample=sample,
                temperature=s.temperature if sample else None,
                top_p=s.top_p if sample else None,
                top_k=None,
                num_return_sequences=n,
                stop_strings=list(s.stop) or None,
                tokenizer=tok,
                pad_token_id=tok.pad_token_id,
            )
        width = enc["input_ids"].shape[1]
        stops = {tok.eos_token_id, tok.pad_token_id} - {None}
        for b, req in enumerate(batch):
            prompt_tokens = int(enc["attention_mask"][b].sum())
            samples = []
            for k in range(n):
                ids = out[b * n + k, width:].tolist()
                length = next((i for i, t in enumerate(ids) if t in stops), None)
                ended = length is not None
                ids = ids[:length] if ended else ids
                text = tok.decode(ids, skip_special_tokens=True)
                hit_stop = any(x in text for x in s.stop)
                if hit_stop:  # cut after the first stop string, kept in the output as vLLM does
                    cut = min(text.index(x) + len(x) for x in s.stop if x in text)
                    text = text[:cut]
                reason = "stop" if ended or hit_stop or len(ids) < s.max_tokens else "length"
                samples.append(Sample(req.sample_indices[k], text, reason, prompt_tokens, len(ids)))
            yield req, samples
