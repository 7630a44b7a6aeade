"""Pieces of `curate generate` that need no engine."""

import json

from curate.backends.base import Sampling, derive_seed, split_prefill
from curate.generate import GenerateOptions, plan, variables
from curate.inputs import InputSpec
from curate.schema import model_tag, sample_id


def test_seeds_depend_on_run_seed_and_problem_only():
    assert derive_seed(0, "p1") == derive_seed(0, "p1")
    assert len({derive_seed(0, "p1"), derive_seed(1, "p1"), derive_seed(0, "p2"), derive_seed(0, "p1", salt=3)}) == 4
    assert 0 <= derive_seed(123, "x") < 2**31
    assert derive_seed(None, "p1") is None


def test_split_prefill():
    assert split_prefill("raw") == (None, "")
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>\n"}]
    assert split_prefill(msgs) == ([{"role": "user", "content": "q"}], "<think>\n")
    assert split_prefill(msgs[:1]) == (msgs[:1], "")


def test_sample_ids_are_readable_and_unique_per_model_and_index():
    assert model_tag("Qwen/QwQ-32B") == "QwQ-32B" and model_tag("/models/llama/") == "llama"
    assert sample_id("gsm-1", "Qwen/QwQ-32B", 3) == "gsm-1:QwQ-32B:3"


def test_template_variables_expose_every_input_column():
    row = {"problem_id": "p", "problem": "q", "reference_answer": "1", "source": "s", "domain": "math",
           "tests": None, "extra": json.dumps({"level": 3, "problem": "shadowed"})}
    v = variables(row, [{"problem": "e"}])
    assert v["level"] == 3 and v["problem"] == "q" and v["examples"] == [{"problem": "e"}] and "extra" not in v


def test_plan_builds_the_config_that_guards_resume(problems_file, tmp_path):
    p = plan(GenerateOptions(input=InputSpec(str(problems_file)), out=str(tmp_path / "run"), model="some/model",
                             template="r1_zero", num_samples=2, max_tokens=64))
    assert p.sampling == Sampling(n=2, temperature=0.6, top_p=0.95, max_tokens=64, seed=0, stop=("</answer>",))
    assert p.config["template"]["name"] == "r1_zero" and len(p.config["template"]["sha256"]) == 64
    assert p.config["input"]["rows"] == 8 and p.config["input"]["answer_column"] == "answer"
    assert p.config["model"] == "some/model" and p.resuming is False
    assert not (tmp_path / "run").exists()  # planning writes nothing
