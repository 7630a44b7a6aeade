"""The student chat-template lint (curate.train.lint) on real tokenizers and templates:
SmolLM2's own, and the DeepSeek-R1-Distill and Qwen3 templates that TRL ships, written
into a copy of SmolLM2's tokenizer to reproduce each broken case."""

from pathlib import Path

import pytest
import trl
from transformers import AutoTokenizer

from curate.train.lint import choose_pad_token, lint

TRL_TEMPLATES = Path(trl.__file__).parent / "chat_templates"
R1_SPECIALS = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"]


def row(i: int, think: bool = True) -> dict:
    answer = f"The answer is $\\boxed{{{2 * i}}}$."
    content = f"<think>\nI add {i} and {i}: that makes {2 * i}.\n</think>\n\n{answer}" if think else answer
    return {"messages": [{"role": "user", "content": f"What is {i} + {i}?"}, {"role": "assistant", "content": content}]}


ROWS = [row(i) for i in range(6)]


@pytest.fixture
def tok(tiny_model):
    t = AutoTokenizer.from_pretrained(tiny_model)  # SmolLM2's tokenizer, saved as a folder (fast to load)
    t.pad_token = "<|endoftext|>"  # SmolLM2 ships pad == eos == <|im_end|>; curate train sft picks this one
    return t


def test_smollm2_template_passes_and_trains_reasoning_and_end_of_turn(tok):
    report = lint(tok, ROWS, max_length=1024)
    assert report.ok, report.problems
    assert report.end_token == "<|im_end|>"
    assert report.trained.startswith("<think>\nI add 0 and 0") and "</think>\n\nThe answer is" in report.trained
    assert "<|im_end|>" in report.trained and "What is 0 + 0?" not in report.trained  # completion only
    assert "What is 0 + 0?" in report.rendered and "lint: ok" in report.render()


def test_r1_distill_template_that_strips_the_think_block_is_refused(tok):
    tok.chat_template = (TRL_TEMPLATES / "deepseek_r1_distill.jinja").read_text()
    report = lint(tok, ROWS, max_length=1024)
    assert not report.ok
    assert "drops the <think> block" in report.problems[0] and "6 of 6 rows" in report.problems[0]
    assert "--chat-template" in report.problems[0]  # the fix


def test_r1_distill_training_template_passes_with_its_own_eos(tok):
    """TRL's training variant keeps the reasoning; with R1's special tokens and EOS the lint agrees."""
    tok.add_special_tokens({"additional_special_tokens": R1_SPECIALS})
    tok.chat_template = (TRL_TEMPLATES / "deepseek_r1_distill_training.jinja").read_text()
    assert not lint(tok, ROWS).ok  # still stops at <|im_end|>, which this template never emits
    tok.eos_token = "<｜end▁of▁sentence｜>"
    report = lint(tok, ROWS)
    assert report.ok, report.problems
    assert report.end_token == "<｜end▁of▁sentence｜>" and "</think>" in report.trained


def test_qwen3_template_strips_reasoning_from_history_turns(tok):
    """Qwen3 keeps <think> only after the last user turn: fine for the trained last turn
    (completion loss), refused when every assistant turn is trained."""
    tok.chat_template = (TRL_TEMPLATES / "qwen3.jinja").read_text()
    two_turns = [{"messages": row(1)["messages"] + row(2)["messages"]} for _ in range(2)]
    assert lint(tok, two_turns).ok
    report = lint(tok, two_turns, loss="all")
    assert not report.ok and "drops the <think> block" in report.problems[0]


def test_pad_token_equal_to_end_of_turn_is_refused_with_a_distinct_pad_as_the_fix(tok):
    tok.pad_token = tok.eos_token
    report = lint(tok, ROWS)
    assert not report.ok
    assert "pad token is the end-of-turn token '<|im_end|>'" in report.problems[0]
    assert "--pad-token '<|endoftext|>'" in report.problems[0]


def test_no_pad_token_means_trl_pads_with_eos_and_is_refused_too(tok):
    tok.pad_token = None
    report = lint(tok, ROWS)
    assert not report.ok and "pad token is the end-of-turn token" in report.problems[0]


def test_the_refusal_is_real_transformers_collator_masks_eos_when_pad_is_eos(tok):
    """What the pad == EOS message claims: an id-based collator drops the EOS label.
    (TRL 1.16's own collator pads labels with -100 and keeps it.)"""
    from transformers import DataCollatorForLanguageModeling
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling as TRLCollator

    tok.pad_token = tok.eos_token
    ids = [tok.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"] for r in ROWS[:2]]
    hf = DataCollatorForLanguageModeling(tok, mlm=False)([{"input_ids": i} for i in ids])
    assert not (hf["labels"] == tok.eos_token_id).any()
    ours = TRLCollator(pad_token_id=tok.pad_token_id)([{"input_ids": i} for i in ids])
    assert (ours["labels"] == tok.eos_token_id).any()


def test_base_model_eos_that_is_not_the_end_of_turn_is_refused(tok):
    tok.eos_token = "<|endoftext|>"  # a base model: EOS <|endoftext|>, chat template ends turns with <|im_end|>
    tok.pad_token = "<empty_output>"
    report = lint(tok, ROWS)
    assert not report.ok and "never stop" in report.problems[0]
    assert "--eos-token '<|im_end|>'" in report.problems[0]


def test_assistant_loss_without_generation_markers_is_refused(tok):
    report = lint(tok, ROWS, loss="assistant")
    assert not report.ok and "assistant-only loss mask cannot be built" in report.problems[0]


def test_end_of_turn_outside_the_generation_span_is_refused(tok):
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.role == 'assistant' %}"
                         "{% generation %}{{ m.content }}{% endgeneration %}{% else %}{{ m.content }}{% endif %}"
                         "<|im_end|>\n{% endfor %}")
    report = lint(tok, ROWS, loss="assistant")
    assert not report.ok and "not on an end-of-turn token" in report.problems[0]


def test_most_rows_longer_than_max_length_is_refused_and_a_few_is_a_note(tok):
    report = lint(tok, ROWS, max_length=16)
    assert not report.ok and "6 of 6 rows are longer than --max-length 16" in report.problems[0]
    long_row = {"messages": [{"role": "user", "content": "word " * 400}, ROWS[0]["messages"][1]]}
    report = lint(tok, ROWS + [long_row], max_length=256)
    assert report.ok and "1 of 7 rows" in report.notes[0]


# A ChatML template that, like Qwen3's `{% if reasoning_content %}`, renders the think block
# only when it holds reasoning: an empty `<think>\n\n</think>` (a --no-cot row) disappears.
STRIPS_EMPTY_THINK = """{%- for message in messages %}
{%- set content = message['content'] %}
{%- if message['role'] == 'assistant' and '</think>' in content %}
{%- set reasoning = content.split('</think>')[0].split('<think>')[-1].strip('\\n') %}
{%- set content = content.split('</think>')[-1].lstrip('\\n') %}
{%- if reasoning %}{%- set content = '<think>\\n' + reasoning + '\\n</think>\\n\\n' + content %}{%- endif %}
{%- endif %}
{{- '<|im_start|>' + message['role'] + '\\n' + content + '<|im_end|>\\n' }}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"""


def empty_think_row(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"Say hello {i}."},
                         {"role": "assistant", "content": f"<think>\n\n</think>\n\nHello {i}!"}]}


def test_a_template_that_drops_an_empty_think_block_is_refused(tok):
    assert lint(tok, ROWS + [empty_think_row(i) for i in range(2)]).ok  # SmolLM2's template renders it verbatim
    tok.chat_template = STRIPS_EMPTY_THINK
    assert lint(tok, ROWS).ok  # the reasoning rows keep their block
    report = lint(tok, ROWS + [empty_think_row(i) for i in range(2)])
    assert not report.ok
    assert report.problems[0].startswith("the chat template drops an empty <think></think> block")
    assert "2 of 8 rows" in report.problems[0] and "--chat-template" in report.problems[0]
    assert "<think>" not in tok.apply_chat_template(empty_think_row(0)["messages"], tokenize=False)


def test_rows_without_reasoning_pass(tok):
    assert lint(tok, [row(i, think=False) for i in range(3)]).ok


def test_choose_pad_token_skips_eos_and_rendered_tokens(tok):
    assert choose_pad_token(tok, "<|im_end|>", ["<|im_start|>user"]) == "<|endoftext|>"
    assert (choose_pad_token(tok, "<|endoftext|>", []) is None
            or choose_pad_token(tok, "<|endoftext|>", []) != "<|endoftext|>")
