"""The trace layouts of tests/data/formats (ShareGPT `conversations`, OpenAI `messages`,
Sky-T1 with a system column, flat rows) as problems, with no conversion: `curate generate`
inputs, `curate train grpo` prompts and `curate eval` benchmarks. The problem is the
first user turn (a system turn is skipped); the reference answer comes from the answer
columns as `curate filter` reads them (GSM8K's `#### N`, a solution's last box)."""

import json
from pathlib import Path

import pytest

from conftest import GSM8K_TEST
from curate.errors import CurateError
from curate.inputs import InputSpec, load_problems
from helpers import curate

FORMATS = Path(__file__).resolve().parent / "data" / "formats"
LAYOUTS = ("skyt1", "openthoughts_sharegpt", "messages", "r1_zero")
SYSTEM = "Your role as an assistant"  # the fixtures' system turn, never part of a prompt
GOLD = {r["question"]: r["answer"].rpartition("####")[2].strip().replace(",", "")
        for r in map(json.loads, GSM8K_TEST.read_text().splitlines())}


def posed(prompt) -> str:
    """The text of a rendered prompt (text or chat messages)."""
    return prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)


def check_problems(prompts: list, answers: list, layout: str) -> None:
    """Every prompt poses one GSM8K problem (and no system turn); its reference answer is that problem's."""
    assert len(prompts) == len(answers) == 8
    for prompt, answer in zip(prompts, answers):
        text = posed(prompt)
        questions = [q for q in GOLD if q in text]
        assert len(questions) == 1, (layout, text[:200])
        assert SYSTEM not in text
        assert answer is not None and answer.replace(",", "") == GOLD[questions[0]], (layout, answer)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_generate_reads_each_layout_and_renders_the_first_user_turn(layout, tmp_path):
    from importlib import import_module

    from curate.generate import variables

    gen = import_module("curate.generate")
    plan = gen.plan(gen.GenerateOptions(input=InputSpec(path=str(FORMATS / f"{layout}.jsonl")),
                                        out=str(tmp_path / "gen"), model="teacher", backend="openai"))
    compiled = plan.template.compile()
    prompts = [plan.template.render(variables(r, None), compiled) for r in plan.problems.iter_rows(named=True)]
    check_problems(prompts, plan.problems["reference_answer"].to_list(), layout)
    assert plan.problems["problem_id"].n_unique() == 8 and not (tmp_path / "gen").exists()


def test_generate_dry_run_takes_sharegpt_rows_on_the_command_line(tmp_path):
    out = tmp_path / "out"
    r = curate("generate", "--input", FORMATS / "openthoughts_sharegpt.jsonl", "--out", out, "-n", "2",
               "--template", "r1_zero", "--dry-run")
    assert "8 problems × 2 samples = 16 samples" in r.stdout and SYSTEM not in r.stdout
    assert "A loaf of bread" in r.stdout and not out.exists()


def test_chat_rows_without_a_user_turn_are_one_line_naming_the_line(tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "1+1?"}], "answer": "2"}\n'
                    '{"messages": [{"role": "system", "content": "hi"}], "answer": "3"}\n')
    with pytest.raises(CurateError) as error:
        load_problems(InputSpec(path=str(path)))
    assert str(error.value) == (f'{path}:2: column "messages": no user turn with text (the problem is the first '
                                "user turn; pass --problem-column)")
    # a problem column wins over the chat (OpenR1-Math: problem, answer, messages); the chat stays out of extra
    path.write_text('{"problem": "2+2?", "messages": [{"role": "user", "content": "other"}], "answer": "4"}\n')
    frame, info = load_problems(InputSpec(path=str(path)))
    assert frame.row(0, named=True)["problem"] == "2+2?" and info["problem_column"] == "problem"
    sharegpt = tmp_path / "sharegpt.jsonl"
    sharegpt.write_text('{"conversations": "[{\\"from\\": \\"human\\", \\"value\\": \\"3+3?\\"}]", '
                        '"ground_truth_solution": "So \\\\boxed{6}."}\n')
    frame, info = load_problems(InputSpec(path=str(sharegpt)))
    assert frame.row(0, named=True) | {"problem_id": None} == {
        "problem_id": None, "source": "sharegpt", "domain": "math", "problem": "3+3?", "reference_answer": "6",
        "tests": None, "extra": "{}"}
    assert (info["problem_column"], info["answer_column"]) == ("conversations", "ground_truth_solution")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_grpo_prompts_of_each_layout(layout, tiny_model, tmp_path):
    from transformers import AutoTokenizer

    from curate.train import grpo

    opts = grpo.GRPOOptions(policy=str(tiny_model), prompts=str(FORMATS / f"{layout}.jsonl"), out=str(tmp_path / "g"),
                            prompts_per_step=4, num_generations=2, micro_batch=4)
    rows, info = grpo.load_prompts(opts, AutoTokenizer.from_pretrained(tiny_model))
    assert info["kind"] == "jsonl" and info["template"] == "r1_zero" and info["rows"] == 8
    check_problems([r["prompt"] for r in rows], [r["reference_answer"] for r in rows], layout)
    assert all("A conversation between User and Assistant." in r["prompt"] for r in rows)


def test_eval_scores_sharegpt_and_messages_benchmarks(tmp_path):
    """A scripted teacher that answers each problem correctly scores pass@1 = 1 on both chat layouts."""
    from curate.generate import EngineOptions
    from curate.train import eval as ev
    from servers import Reply, ScriptedServer, chat_response

    def respond(call):
        answer = next(a for q, a in GOLD.items() if q in call.prompt)
        return Reply(body=chat_response([f"<think>\nwork\n</think>\n\nSo $\\boxed{{{answer}}}$."]
                                        * call.body.get("n", 1)))

    benchmarks = f"{FORMATS / 'openthoughts_sharegpt.jsonl'},{FORMATS / 'messages.jsonl'}"
    with ScriptedServer(respond) as server:
        m = ev.run(ev.EvalOptions(benchmarks=benchmarks, out=str(tmp_path / "eval"), model="teacher", k=2,
                                  backend="openai", limit=3, workers=1, progress=False,
                                  engine=EngineOptions(base_url=server.base_url, concurrency=1)))
    assert m["status"] == "complete" and m["counts"] == {"benchmarks": 2, "problems": 6, "samples": 12}
    assert {name: r["pass@1"] for name, r in m["results"].items()} == {"openthoughts_sharegpt": 1.0, "messages": 1.0}
