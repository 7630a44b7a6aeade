import json
import subprocess
import sys

import pytest

from curate.errors import CurateError
from curate.templates import builtin_names, load_examples, load_template

R1_ZERO = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with the answer. "
    "The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, respectively, "
    "i.e., <think> reasoning process here </think> <answer> answer here </answer>. User: PROBLEM. Assistant:"
)
EXAMPLES = "prompts/examples/cold_start_math.jsonl"


def test_builtins_present():
    assert set(builtin_names()) >= {"r1_zero", "reasoning_chat", "cold_start_fewshot", "reflect_verify", "general_cot",
                                    "judge", "arithmetic_fewshot"}


def test_r1_zero_is_verbatim_raw_text():
    t = load_template("r1_zero")
    assert t.render({"problem": "PROBLEM"}) == R1_ZERO
    assert t.stop == ["</answer>"]


def test_reasoning_chat_is_one_user_message_with_r1_instruction():
    out = load_template("reasoning_chat").render({"problem": "What is 2+2?"})
    assert out == [{"role": "user",
                    "content": "What is 2+2?\nPlease reason step by step, and put your final answer within \\boxed{}."}]


def test_cold_start_fewshot_renders_examples_as_turns():
    examples, sha = load_examples(EXAMPLES)
    out = load_template("cold_start_fewshot").render({"problem": "Q?", "examples": examples})
    roles = [m["role"] for m in out]
    assert roles == ["system"] + ["user", "assistant"] * len(examples) + ["user"]
    assert out[2]["content"].startswith("<think>\n") and "</think>\n\n" in out[2]["content"]
    assert out[-1]["content"] == "Q?"
    assert len(sha) == 64


def test_cold_start_without_examples_says_how_to_fix():
    with pytest.raises(CurateError, match=r"'examples' is undefined.*pass --examples FILE"):
        load_template("cold_start_fewshot").render({"problem": "Q"})


def test_judge_needs_its_variables():
    t = load_template("judge")
    out = t.render({"problem": "p", "reference_answer": "1/2", "final_answer": "0.5"})
    assert out[0]["role"] == "system" and "[[YES]]" in out[1]["content"] and "0.5" in out[1]["content"]
    with pytest.raises(CurateError, match="'final_answer' is undefined"):
        t.render({"problem": "p", "reference_answer": "1"})


@pytest.mark.parametrize("name", ["reflect_verify", "general_cot"])
def test_other_chat_templates(name):
    out = load_template(name).render({"problem": "Name three primes."})
    assert out[-1]["role"] == "user" and out[-1]["content"].startswith("Name three primes.")


def test_user_template_file_with_prefill_and_metadata(tmp_path):
    path = tmp_path / "mine.jinja"
    path.write_text('{#---\ndescription: mine\nstop: ["END"]\n---#}\n'
                    '{% call message("user") %}\n  {{ problem }}  \n{% endcall %}\n'
                    '{{ message("assistant", "<think>\\n") }}\n')
    t = load_template(str(path))
    assert t.name == "mine" and t.stop == ["END"] and t.description == "mine"
    assert t.render({"problem": "Q"}) == [{"role": "user", "content": "Q"},
                                          {"role": "assistant", "content": "<think>\n"}]


def test_undefined_variable_names_it(tmp_path):
    path = tmp_path / "t.jinja"
    path.write_text("Solve {{ problem }} using {{ hint }}")
    with pytest.raises(CurateError) as e:
        load_template(str(path)).render({"problem": "x"})
    assert "'hint' is undefined" in str(e.value) and "given: problem" in str(e.value)


def test_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jinja"
    path.write_text("line one\n{% if %}\n")
    with pytest.raises(CurateError, match=r"bad.jinja:2: template syntax error"):
        load_template(str(path)).compile()


def test_text_outside_messages_is_an_error(tmp_path):
    path = tmp_path / "mixed.jinja"
    path.write_text('stray {% call message("user") %}x{% endcall %}')
    with pytest.raises(CurateError, match="text outside message"):
        load_template(str(path)).render({})


def test_unknown_template_lists_builtins():
    with pytest.raises(CurateError, match="unknown template 'nope'; built-in: arithmetic_fewshot, cold_start_fewshot"):
        load_template("nope")


def test_template_sha_is_content_hash(tmp_path):
    a = tmp_path / "a.jinja"
    a.write_text("{{ problem }}")
    sha = load_template(str(a)).sha
    a.write_text("{{ problem }}!")
    assert load_template(str(a)).sha != sha


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "curate", *args], capture_output=True, text=True)


def test_cli_templates_list_show_render():
    listed = run_cli("templates", "list")
    assert listed.returncode == 0 and "r1_zero" in listed.stdout and "judge" in listed.stdout
    shown = run_cli("templates", "show", "reasoning_chat")
    assert shown.returncode == 0 and 'message("user")' in shown.stdout
    rendered = run_cli("templates", "render", "r1_zero", "--problem", "PROBLEM")
    assert rendered.stdout.strip() == R1_ZERO
    as_json = run_cli("templates", "render", "cold_start_fewshot", "--examples", EXAMPLES, "--json")
    assert json.loads(as_json.stdout)[-1] == {"role": "user", "content": "What is 17 * 24?"}


def test_cli_template_error_is_one_line_exit_2(tmp_path):
    path = tmp_path / "t.jinja"
    path.write_text("{{ nope }}")
    r = run_cli("templates", "render", str(path))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and "'nope' is undefined" in r.stderr
