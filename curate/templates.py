"""Prompt templates: Jinja files in prompts/ that a user can copy and edit.

A template renders either raw text (for base models, e.g. `r1_zero`) or chat messages.
Chat templates say which message is which with `message(role)`:

    {% call message("user") %}{{ problem }}{% endcall %}     content between the tags, stripped
    {{ message("assistant", "<think>\\n") }}                  content verbatim (a prefill)

A final assistant message is a prefill that the model continues. Text outside
`message()` in a chat template is an error, as is any undefined variable
(StrictUndefined): the error names the variable and what the template was given.

An optional first comment holds YAML metadata:

    {#---
    description: one line for `curate templates list`
    stop: ["</answer>"]          # default stop strings for this template
    variables: [problem]         # what the template reads (documentation)
    ---#}
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import jinja2

from curate.errors import CurateError, load_yaml, one_line

SUFFIX = ".jinja"


@dataclass
class Template:
    name: str
    path: str
    source: str
    meta: dict = field(default_factory=dict)

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()

    @property
    def description(self) -> str:
        return str(self.meta.get("description", ""))

    @property
    def stop(self) -> list[str]:
        return list(self.meta.get("stop", []) or [])

    def compile(self) -> jinja2.Template:
        try:
            return _ENV.from_string(self.source)
        except jinja2.TemplateSyntaxError as e:
            raise CurateError(f"{self.path}:{e.lineno}: template syntax error: {e.message}") from None

    def render(self, variables: dict, compiled: jinja2.Template | None = None) -> str | list[dict]:
        """Render to raw text, or to a list of chat messages when the template calls message()."""
        compiled = compiled or self.compile()
        messages: list[dict] = []

        def message(role: str, content: str | None = None, caller=None) -> str:
            if role not in ("system", "user", "assistant"):
                raise CurateError(f"{self.path}: message role must be system, user or assistant, not {role!r}")
            text = caller().strip() if caller is not None else str(content)
            messages.append({"role": role, "content": text})
            return ""

        try:
            text = compiled.render({**variables, "message": message})
        except jinja2.UndefinedError as e:
            given = ", ".join(sorted(variables)) or "nothing"
            raise CurateError(
                f"{self.path}: {e.message} (the template was given: {given})"
                + ("; pass --examples FILE" if "'examples'" in str(e.message) else "")
            ) from None
        except jinja2.TemplateError as e:
            raise CurateError(f"{self.path}: template error: {one_line(e)}") from None
        except CurateError:
            raise
        except Exception as e:  # noqa: BLE001 - the template's own expression failed ({{ 1/0 }}, a bad call)
            raise CurateError(f"{self.path}: template error: {type(e).__name__}: {one_line(e)}") from None
        if not messages:
            return text
        if text.strip():
            raise CurateError(
                f"{self.path}: chat template has text outside message(): {text.strip()[:60]!r}"
            )
        return messages


_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=False,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)
_ENV.filters["tojson"] = lambda v: json.dumps(v, ensure_ascii=False)


def builtin_dir():
    return resources.files("curate.prompts")


def builtin_names() -> list[str]:
    return sorted(p.name[: -len(SUFFIX)] for p in builtin_dir().iterdir() if p.name.endswith(SUFFIX))


def load_template(name_or_path: str) -> Template:
    """A built-in template by name (`r1_zero`) or a path to a Jinja file."""
    path = Path(name_or_path)
    if path.suffix or "/" in name_or_path or path.exists():
        if not path.is_file():
            raise CurateError(f"{name_or_path}: no such template file")
        try:
            source = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise CurateError(f"{name_or_path}: not UTF-8 (byte {e.start})") from None
        name = path.name.removesuffix(SUFFIX)
        shown = str(path)
    else:
        res = builtin_dir() / f"{name_or_path}{SUFFIX}"
        if not res.is_file():
            raise CurateError(
                f"unknown template {name_or_path!r}; built-in: {', '.join(builtin_names())} (or pass a path)"
            )
        source = res.read_text(encoding="utf-8")
        name, shown = name_or_path, f"prompts/{name_or_path}{SUFFIX}"
    return Template(name=name, path=shown, source=source, meta=_read_meta(source, shown))


def _read_meta(source: str, shown: str) -> dict:
    stripped = source.lstrip()
    if not stripped.startswith("{#---"):
        return {}
    end = stripped.find("---#}")
    if end < 0:
        raise CurateError(f"{shown}:1: metadata comment opened with '{{#---' is not closed with '---#}}'")
    meta = load_yaml(stripped[5:end], shown, what="bad template metadata") or {}
    if not isinstance(meta, dict):
        raise CurateError(f"{shown}:1: template metadata must be a YAML mapping")
    return meta


def load_examples(path: str) -> tuple[list[dict], str]:
    """Few-shot examples (JSONL or a JSON list of objects) and the sha256 of the file."""
    p = Path(path)
    if not p.is_file():
        raise CurateError(f"{path}: no such examples file")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CurateError(f"{path}: not UTF-8 (byte {e.start})") from None
    examples: list = []
    if p.suffix == ".json":
        try:
            examples = json.loads(text)
        except json.JSONDecodeError as e:
            raise CurateError(f"{path}:{e.lineno}:{e.colno}: malformed JSON: {e.msg}") from None
        if not isinstance(examples, list):
            raise CurateError(f"{path}:1:1: expected a JSON list of example objects")
    else:
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                examples.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise CurateError(f"{path}:{lineno}:{e.colno}: malformed JSON: {e.msg}") from None
    for i, ex in enumerate(examples, 1):
        if not isinstance(ex, dict):
            raise CurateError(f"{path}: example {i} is not a JSON object")
    if not examples:
        raise CurateError(f"{path}: no examples in the file")
    return examples, hashlib.sha256(raw).hexdigest()
