"""`curate run RECIPE`: a whole pipeline from one YAML file, planned, run and resumed.

A recipe names its stages, each one curate command with its options under the names of
the Python API (curate/api.py; the options dataclasses are the source of truth), and
variables that `--set key=value` overrides:

    vars:        {name: value}                      # `${name}` / `${vars.name}` in stages
    smoke:       {vars: {...}, stages: {NAME: {option: value}}}   # what --smoke changes
    stages:
      NAME:
        command: generate | filter | select | mix | card | report | train sft | train grpo | eval
        after: [NAME, ...]                          # optional: order without a data reference
        option: value                               # any option of that command but `out`

`${stages.NAME.out}` is an earlier stage's output (`${stages.NAME.model}`: a trained
stage's model); these references make the DAG. Built in: `${out}` (the run's folder),
`${data}` and `${prompts}` (curate's shipped data and templates), `${tiny_model}` (a tiny
random Qwen2 built on first use, curate/tiny.py). Everything is checked before anything
runs: unknown stages, options, variables and bad values are one line naming FILE:LINE.

Each stage runs through curate.api in its own run directory, OUT/NAME, in dependency
order. OUT/recipe.json (written atomically before and after every stage) records each
stage's fingerprint: its command, options, the size and mtime of the files it reads,
and its inputs' fingerprints. Re-running skips a complete stage whose fingerprint
matches, resumes an interrupted one (the stages resume themselves, curate.store), and
re-runs a changed stage, with everything downstream, with --overwrite. So a run killed
at any moment and run again ends with the same outputs.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import time
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from curate.errors import CurateError, yaml_error, yaml_loader
from curate.options import opt

# the command as a recipe (and the command line) names it -> the curate.api function
COMMANDS = {"generate": "generate", "filter": "filter", "select": "select", "mix": "mix", "card": "card",
            "report": "report", "train sft": "train_sft", "train grpo": "train_grpo", "eval": "evaluate"}
# options `curate run` sets itself
RESERVED = {"out", "overwrite", "dry_run", "progress", "command", "resume", "launched", "lint_only", "print_launch"}
# where each command writes: "dir" OUT/NAME (a run directory), "file" OUT/NAME.html, None: into its input
WRITES = {"generate": "dir", "filter": "dir", "select": "dir", "mix": "dir", "train sft": "dir", "train grpo": "dir",
          "eval": "dir", "report": "file", "card": None}
BUILTINS = ("out", "data", "prompts", "tiny_model")
REFERENCE = re.compile(r"\$\{([^}]*)\}")
TOP_KEYS = ("description", "vars", "smoke", "stages")
TINY_MODEL = ".tiny-model"  # under OUT: hidden, so it is not taken for a stage


@dataclass
class RunOptions:
    recipe: str = opt(help="A recipe YAML file, or the name of a shipped recipe (r1, r1_zero, distill).", argument=True)
    out: str = opt(help="The run's folder: one run directory per stage (OUT/NAME), recipe.json, report.html.",
                   path="dir")
    sets: dict = opt({}, "Override a variable of the recipe (repeatable; the value is read as YAML).", cli="--set",
                     pairs="KEY=VALUE", parse="yaml")
    smoke: bool = opt(False, "Scale the recipe down to a few problems, samples and steps (its `smoke:` block): the "
                             "embedded teacher, a tiny student; minutes on a CPU.")
    dry_run: bool = opt(False, "Print the plan (each stage, its command line, its inputs, what is complete); run "
                               "nothing, write nothing.")
    progress: bool = opt(True, "Show progress bars (--no-progress: none).", cli="--no-progress")


def recipes_dir():
    return resources.files("curate") / "recipes"


def shipped() -> list[str]:
    """The names of the recipes that ship with curate."""
    return sorted(p.name.removesuffix(".yaml") for p in recipes_dir().iterdir() if p.name.endswith(".yaml"))


def recipe_path(name: str) -> Path:
    """A recipe file: a path, or the name of a shipped recipe."""
    path = Path(name)
    if path.is_file():
        return path
    builtin = recipes_dir() / f"{name.removesuffix('.yaml')}.yaml"
    if "/" not in name and builtin.is_file():
        return Path(str(builtin))
    raise CurateError(f"{name}: no such recipe file or shipped recipe (shipped: {', '.join(shipped())})")


# -- reading YAML with line numbers ---------------------------------------------------------


class Source:
    """A recipe file's values and the line of every key and value (by path)."""

    def __init__(self, path: Path):
        import yaml

        self.path = path
        self.lines: dict[tuple, int] = {}
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise CurateError(f"{path}: unreadable ({e})") from None
        self.sha256 = hashlib.sha256(text.encode()).hexdigest()
        try:
            loader = yaml_loader(text)
            try:
                node = loader.get_single_node()
                self.data = self._value(loader, node, ()) if node is not None else {}
            finally:
                loader.dispose()
        except yaml.YAMLError as e:
            raise yaml_error(e, text, str(path)) from None
        if not isinstance(self.data, dict):
            raise CurateError(f"{path}: a recipe is a mapping with `vars:` and `stages:`")

    def _value(self, loader, node, path: tuple):
        import yaml

        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise CurateError(f"{self.path}:{key_node.start_mark.line + 1}: a key must be a name")
                key = key_node.value
                if key in out:
                    raise CurateError(f"{self.path}:{key_node.start_mark.line + 1}: `{key}` is given twice")
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                out[key] = self._value(loader, value_node, (*path, key))
                self.lines[(*path, key)] = key_node.start_mark.line + 1  # the key's line, not its value's
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._value(loader, item, (*path, i)) for i, item in enumerate(node.value)]
        return loader.construct_object(node, deep=True)

    def where(self, *path) -> str:
        """FILE:LINE of a key (the nearest known parent when it has no line)."""
        while path and path not in self.lines:
            path = path[:-1]
        return f"{self.path}:{self.lines[path]}" if path in self.lines else str(self.path)


# -- the plan --------------------------------------------------------------------------------


@dataclass
class Stage:
    name: str
    command: str  # as in COMMANDS
    values: dict  # the options after references were resolved (the keyword arguments of curate.api)
    needs: list[str]  # stages this one reads or follows
    where: str  # FILE:LINE of the stage
    out: Path | None = None  # what it writes (OUT/NAME, OUT/NAME.html), or None (card: into its mix folder)
    fingerprint: str = ""
    state: str = ""  # complete | resume | run | rerun (the plan's verdict)

    @property
    def function(self) -> str:
        return COMMANDS[self.command]

    def argv(self) -> list[str]:
        """The equivalent command line."""
        from curate.api import options_class
        from curate.options import argv

        values = {**self.values, "out": str(self.out)} if self.out is not None else self.values
        return ["curate", *self.command.split(), *argv(options_class(self.function), values)]


@dataclass
class Plan:
    source: Source
    name: str
    out: Path
    smoke: bool
    vars: dict
    stages: list[Stage]  # in the order they run
    sets: dict = field(default_factory=dict)
    uses_tiny_model: bool = False

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)


def plan(recipe: str, out, sets: dict | None = None, smoke: bool = False) -> Plan:
    """Read, check and resolve a recipe; decide what each stage will do. Writes nothing."""
    source = Source(recipe_path(recipe))
    doc = source.data
    for key in doc:
        if key not in TOP_KEYS:
            raise CurateError(f"{source.where(key)}: unknown key `{key}` (a recipe has {', '.join(TOP_KEYS)})")
    out = Path(out).resolve()
    raw_vars = _mapping(source, doc.get("vars") or {}, ("vars",))
    raw_stages = _mapping(source, doc.get("stages"), ("stages",), required=True)
    if not raw_stages:
        raise CurateError(f"{source.where('stages')}: `stages:` is empty; a recipe names at least one stage")
    if smoke:
        raw_vars, raw_stages = _apply_smoke(source, doc.get("smoke"), raw_vars, raw_stages)
    for name in raw_vars:
        if name in BUILTINS or name in ("vars", "stages"):
            raise CurateError(f"{source.where('vars', name)}: `{name}` is a built-in name; call the variable "
                              "something else")
    raw_vars = _apply_sets(source, raw_vars, sets or {})
    ctx = _Context(source, out, raw_vars, raw_stages)
    stages = [ctx.stage(name) for name in raw_stages]
    ordered = _order(source, stages)
    p = Plan(source, Path(str(source.path)).stem, out, smoke, ctx.resolved_vars(), ordered, dict(sets or {}),
             ctx.uses_tiny_model)
    _fingerprint(p)
    _decide(p)
    return p


def _mapping(source: Source, value, path: tuple, required: bool = False) -> dict:
    if value is None and required:
        raise CurateError(f"{source.path}: no `stages:`; a recipe names its stages under `stages:`")
    if not isinstance(value, dict):
        raise CurateError(f"{source.where(*path)}: `{path[-1]}` must be a mapping")
    return value


def _apply_smoke(source: Source, block, raw_vars: dict, raw_stages: dict) -> tuple[dict, dict]:
    """--smoke: the recipe's `smoke:` block over its vars and stage options."""
    if block is None:
        raise CurateError(f"{source.path}: no `smoke:` block, so --smoke cannot scale this recipe down")
    block = _mapping(source, block, ("smoke",))
    for key in block:
        if key not in ("vars", "stages"):
            raise CurateError(f"{source.where('smoke', key)}: unknown key `{key}` (smoke has vars, stages)")
    raw_vars = dict(raw_vars)
    for name, value in _mapping(source, block.get("vars") or {}, ("smoke", "vars")).items():
        if name not in raw_vars:
            raise CurateError(f"{source.where('smoke', 'vars', name)}: smoke sets `{name}`, which is not in `vars:`")
        raw_vars[name] = value
        source.lines[("vars", name)] = source.lines[("smoke", "vars", name)]
    raw_stages = {k: dict(v) if isinstance(v, dict) else v for k, v in raw_stages.items()}
    for name, options in _mapping(source, block.get("stages") or {}, ("smoke", "stages")).items():
        if name not in raw_stages:
            raise CurateError(f"{source.where('smoke', 'stages', name)}: no stage `{name}` in `stages:`")
        if not isinstance(raw_stages[name], dict):
            raise CurateError(f"{source.where('stages', name)}: stage `{name}` must be a mapping with `command:` "
                              "and its options")
        for key, value in _mapping(source, options, ("smoke", "stages", name)).items():
            raw_stages[name][key] = value
            source.lines[("stages", name, key)] = source.lines[("smoke", "stages", name, key)]
    return raw_vars, raw_stages


def _apply_sets(source: Source, raw_vars: dict, sets: dict) -> dict:
    """--set over the vars, each value checked against the type of the var's value."""
    out = dict(raw_vars)
    for name, value in sets.items():
        if name not in raw_vars:
            raise CurateError(f"--set {name}: the recipe {source.path} has no such variable "
                              f"(vars: {', '.join(raw_vars) or 'none'})")
        old = raw_vars[name]
        if isinstance(old, str) and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # --set name=123 for a text variable
        elif isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif old is not None and not isinstance(old, str) and not (
                type(value) is type(old) or (isinstance(old, (list, dict)) and isinstance(value, type(old)))):
            raise CurateError(f"--set {name}={value}: expected {_kind(old)} like the recipe's {old!r} "
                              f"({source.where('vars', name)})")
        out[name] = value
    return out


def _kind(value) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "text", list: "a list",
            dict: "a mapping"}.get(type(value), type(value).__name__)


class _Context:
    """Resolves `${...}` references: variables (which may use other variables and the
    built-ins), built-ins, and earlier stages' outputs (which make the DAG)."""

    def __init__(self, source: Source, out: Path, raw_vars: dict, raw_stages: dict):
        self.source, self.out, self.raw_vars, self.raw_stages = source, out, raw_vars, raw_stages
        self.vars: dict = {}
        self.resolving: list[str] = []
        self.uses_tiny_model = False

    def resolved_vars(self) -> dict:
        return {name: self.var(name, ("vars", name)) for name in self.raw_vars}

    def var(self, name: str, where: tuple):
        if name in self.vars:
            return self.vars[name]
        if name not in self.raw_vars:
            raise CurateError(f"{self.source.where(*where)}: `${{{name}}}`: no such variable "
                              f"(vars: {', '.join(self.raw_vars) or 'none'})")
        if name in self.resolving:
            raise CurateError(f"{self.source.where('vars', name)}: variables refer to each other in a loop "
                              f"({' -> '.join([*self.resolving, name])})")
        self.resolving.append(name)
        try:
            value = self.resolve(self.raw_vars[name], ("vars", name), needs=None)
        finally:
            self.resolving.pop()
        self.vars[name] = value
        return value

    def builtin(self, name: str):
        if name == "out":
            return str(self.out)
        if name == "data":
            return str(resources.files("curate.data"))
        if name == "prompts":
            return str(resources.files("curate.prompts"))
        self.uses_tiny_model = True
        return str(self.out / TINY_MODEL)

    def reference(self, ref: str, where: tuple, needs: list | None):
        ref = ref.strip()
        parts = ref.split(".")
        if parts[0] == "stages":
            if needs is None:
                raise CurateError(f"{self.source.where(*where)}: `${{{ref}}}`: a variable cannot refer to a stage")
            if len(parts) != 3 or parts[2] not in ("out", "model"):
                raise CurateError(f"{self.source.where(*where)}: `${{{ref}}}`: write ${{stages.NAME.out}} "
                                  "or ${stages.NAME.model}")
            name, what = parts[1], parts[2]
            if name not in self.raw_stages:
                raise CurateError(f"{self.source.where(*where)}: `${{{ref}}}`: no stage `{name}` "
                                  f"(stages: {', '.join(self.raw_stages)})")
            if name == where[1]:
                raise CurateError(f"{self.source.where(*where)}: `${{{ref}}}`: a stage cannot read its own output")
            command = (self.raw_stages[name] or {}).get("command") if isinstance(self.raw_stages[name], dict) else None
            command = command if isinstance(command, str) else None  # a bad one is refused at its own stage
            if what == "model" and command not in ("train sft", "train grpo"):
                raise CurateError(f"{self.source.where(*where)}: `${{{ref}}}`: only a `train sft` or `train grpo` "
                                  "stage has a model")
            if WRITES.get(command, "dir") is None:
                raise CurateError(f"{self.source.where(*where)}: `${{{ref}}}`: a `{command}` stage writes into its "
                                  "input, it has no output of its own")
            if name not in needs:
                needs.append(name)
            out = self.out / (f"{name}.html" if WRITES.get(command) == "file" else name)
            return str(out / "model") if what == "model" and command == "train grpo" else str(out)
        if parts[0] == "vars" and len(parts) == 2:
            return self.var(parts[1], where)
        if len(parts) == 1 and ref in BUILTINS:
            return self.builtin(ref)
        if len(parts) == 1 and ref:
            return self.var(ref, where)
        raise CurateError(f"{self.source.where(*where)}: `${{{ref}}}`: write ${{NAME}}, ${{vars.NAME}} or "
                          "${stages.NAME.out}")

    def resolve(self, value, where: tuple, needs: list | None):
        """A value with its references replaced: a whole `${...}` keeps the referred value's
        type; inside a longer text it is written in as text."""
        if isinstance(value, dict):
            return {k: self.resolve(v, (*where, k), needs) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, (*where, i), needs) for i, v in enumerate(value)]
        if not isinstance(value, str) or "${" not in value:
            return value
        whole = REFERENCE.fullmatch(value)
        if whole:
            return self.reference(whole.group(1), where, needs)

        def text(m):
            found = self.reference(m.group(1), where, needs)
            if found is None:
                raise CurateError(f"{self.source.where(*where)}: `{m.group(0)}` has no value; give it with "
                                  f"--set {m.group(1).removeprefix('vars.')}=VALUE")
            return str(found)

        return REFERENCE.sub(text, value)

    def stage(self, name: str) -> Stage:
        where = self.source.where("stages", name)
        raw = self.raw_stages[name]
        if not re.fullmatch(r"[A-Za-z0-9][\w-]*", str(name)):
            raise CurateError(f"{where}: stage name `{name}`: use letters, digits, _ and - (it names its folder)")
        if not isinstance(raw, dict):
            raise CurateError(f"{where}: stage `{name}` must be a mapping with `command:` and its options")
        command = raw.get("command")
        if command == "report" and name == "report":
            raise CurateError(f"{where}: a report stage cannot be called `report`: OUT/report.html is the report "
                              "across stages that curate run writes")
        if not isinstance(command, str) or command not in COMMANDS:
            shown = f"`{command}`" if command is not None else "no `command:`"
            raise CurateError(f"{self.source.where('stages', name, 'command')}: stage {name}: {shown}; "
                              f"choose one of {', '.join(COMMANDS)}")
        after = raw.get("after") or []
        after = [after] if isinstance(after, str) else after
        if not isinstance(after, list):
            raise CurateError(f"{self.source.where('stages', name, 'after')}: stage {name}: `after` is a list of "
                              "stage names")
        needs: list[str] = []
        for other in after:
            if not isinstance(other, str) or other not in self.raw_stages or other == name:
                raise CurateError(f"{self.source.where('stages', name, 'after')}: stage {name}: after `{other}`: "
                                  f"no such other stage")
            needs.append(other)
        options = {k: v for k, v in raw.items() if k not in ("command", "after")}
        values = {}
        for key, value in options.items():
            values[key] = self.resolve(value, ("stages", name, key), needs)
        stage = Stage(name, command, values, needs, where)
        check_options(self.source, stage)
        kind = WRITES[command]
        stage.out = self.out / name if kind == "dir" else self.out / f"{name}.html" if kind == "file" else None
        return stage


def check_options(source: Source, stage: Stage) -> None:
    """Every option of a stage exists for its command and has a value of the right type,
    choice and range; the options dataclass then builds (required options present)."""
    from curate.api import options_class
    from curate.options import build, flat

    cls = options_class(stage.function)
    fields = {x.name: x for x in flat(cls)}
    for key in list(stage.values):
        where = source.where("stages", stage.name, key)
        if key in RESERVED and key in fields:
            raise CurateError(f"{where}: stage {stage.name}: `{key}` is set by curate run "
                              f"({'OUT/' + stage.name if key == 'out' else 'remove it'})")
        if key not in fields:
            import difflib

            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean `{close[0]}`?" if close else f" (options: {', '.join(sorted(fields))})"
            raise CurateError(f"{where}: stage {stage.name}: `{stage.command}` has no option `{key}`{hint}")
        stage.values[key] = check_value(fields[key], stage.values[key], f"{where}: stage {stage.name}: {key}")
    probe = dict(stage.values)
    if "out" in fields:
        probe["out"] = "OUT"
    try:
        build(cls, **probe)
    except TypeError as e:
        missing = re.search(r"missing required option '(\w+)'", str(e))
        what = f"the option `{missing.group(1)}` is required" if missing else str(e)
        raise CurateError(f"{stage.where}: stage {stage.name}: {what}") from None
    if stage.command == "filter":
        check_chain_option(source, stage)


def check_chain_option(source: Source, stage: Stage) -> None:
    """A filter stage's `chain` file (or `filters` list) is read now, so a missing file, a
    bad file, an unknown filter or parameter is refused before any stage runs (parameter
    values are checked when the stage builds its filters: that loads models and data)."""
    from curate.chain import check_chain, read_chain

    chain, names = stage.values.get("chain"), stage.values.get("filters")
    if chain is None and names is None:
        return  # the shipped default chain
    key = "chain" if chain is not None else "filters"
    try:
        check_chain(read_chain(chain, names)[0])
    except CurateError as e:
        raise CurateError(f"{source.where('stages', stage.name, key)}: stage {stage.name}: {key}: {e}") from None


def check_value(x, value, where: str):
    """`value` as option `x` takes it (a list for a tuple option, ...), or one line saying why not."""
    from curate.options import MISSING, _base_type

    m = x.meta
    tp = _base_type(x.type)
    optional = tp is not x.type or x.default is None
    if value is None:
        if optional or (x.default is MISSING and not x.required):
            return None
        raise CurateError(f"{where}: has no value (it needs {_expected(tp)})")
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        if not isinstance(value, bool):
            raise CurateError(f"{where}: expected true or false, got {value!r}")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise CurateError(f"{where}: expected an integer, got {value!r}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CurateError(f"{where}: expected a number, got {value!r}")
        value = float(value)
    elif tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise CurateError(f"{where}: expected text, got {value!r}")
    elif tp is dict:
        if not isinstance(value, dict):
            raise CurateError(f"{where}: expected a mapping of KEY: VALUE, got {value!r}")
        value = {str(k): v for k, v in value.items()}
    elif origin in (tuple, list):
        if m.get("comma") and isinstance(value, str):
            value = [s.strip() for s in value.split(",") if s.strip()]
        if isinstance(value, str) and args[-1:] == (...,) or (isinstance(value, str) and origin is list):
            value = [value]
        if not isinstance(value, list):
            raise CurateError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else str
        if args[-1:] != (...,) and origin is tuple and len(value) != len(args):
            raise CurateError(f"{where}: expected {len(args)} values, got {len(value)}")
        checked = []
        for v in value:
            if item is float and isinstance(v, (int, float)) and not isinstance(v, bool):
                checked.append(float(v))
            elif item is str and isinstance(v, (str, int, float)) and not isinstance(v, bool):
                checked.append(str(v))
            elif isinstance(v, item) and not isinstance(v, bool):
                checked.append(v)
            else:
                raise CurateError(f"{where}: expected a list of {_expected(item)}, got {v!r}")
        value = checked if origin is list else tuple(checked)
    if m.get("choices") and value not in m["choices"]:
        raise CurateError(f"{where}: {value!r} is not one of {', '.join(map(str, m['choices']))}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "min" in m and (value <= m["min"] if m.get("min_open") else value < m["min"]):
            raise CurateError(f"{where}: must be {'>' if m.get('min_open') else '>='} {m['min']}, got {value}")
        if "max" in m and value > m["max"]:
            raise CurateError(f"{where}: must be <= {m['max']}, got {value}")
    return value


def _expected(tp) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "text", dict: "a mapping"}.get(
        tp, "a list" if typing.get_origin(tp) in (tuple, list) else getattr(tp, "__name__", str(tp)))


def _order(source: Source, stages: list[Stage]) -> list[Stage]:
    """The stages in dependency order (the recipe's order where it is free); a cycle is one line."""
    by_name = {s.name: s for s in stages}
    done: list[str] = []
    visiting: list[str] = []

    def visit(s: Stage):
        if s.name in done:
            return
        if s.name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(s.name):], s.name])
            raise CurateError(f"{s.where}: the stages refer to each other in a loop ({cycle})")
        visiting.append(s.name)
        for n in s.needs:
            visit(by_name[n])
        visiting.pop()
        done.append(s.name)

    for s in stages:
        visit(s)
    return [by_name[n] for n in done]


# -- fingerprints and what to do ---------------------------------------------------------------


def _fingerprint(p: Plan) -> None:
    """Each stage's fingerprint: command, options (OUT written as ${out}, so a moved
    folder keeps its fingerprints), the size and mtime of each file it reads outside
    OUT, and the fingerprints of the stages it needs."""
    root = str(p.out)
    for s in p.stages:
        files = {}
        for value in _strings(s.values):
            path = Path(value)
            if value.startswith(root) or len(value) > 4096 or not _is_file(path):
                continue
            st = path.stat()
            files[value] = [st.st_size, st.st_mtime_ns]
        body = {"command": s.command, "options": s.values, "files": files,
                "needs": {n: p.stage(n).fingerprint for n in s.needs}}
        text = json.dumps(body, sort_keys=True, default=str).replace(root, "${out}")
        s.fingerprint = hashlib.sha256(text.encode()).hexdigest()[:16]


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)
    if isinstance(value, str) and "=" in value:  # NAME=PATH:COUNT (mix sources), KEY=PATH
        yield value.split("=", 1)[1].rsplit(":", 1)[0]


def read_state(out: Path) -> dict:
    """OUT/recipe.json, or {} when there is none."""
    path = out / "recipe.json"
    if not path.is_file():
        return {}
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CurateError(f"{path}: unreadable ({e}); remove it to plan afresh") from None
    return state if isinstance(state, dict) else {}


def _decide(p: Plan) -> None:
    """Each stage's verdict: complete (skipped), resume (the same fingerprint, not finished),
    run (nothing there yet), rerun (changed, or a changed run not finished: --overwrite)."""
    records = read_state(p.out).get("stages") or {}
    for s in p.stages:
        record = records.get(s.name) or {}
        exists = s.out is None or s.out.exists()
        if record.get("fingerprint") == s.fingerprint:
            if record.get("status") == "complete" and output_complete(s):
                s.state = "complete"
            else:
                s.state = "rerun" if record.get("overwrite") else "resume" if exists else "run"
        elif record:
            s.state = "rerun" if exists else "run"
        else:
            s.state = "resume" if exists else "run"


def output_complete(s: Stage) -> bool:
    """The stage's output is there and says complete."""
    from curate.store import load_manifest

    if s.out is None:  # card: it rewrote its mix folder's README.md
        return (Path(s.values["mix_dir"]) / "README.md").is_file()
    if WRITES[s.command] == "file":
        return s.out.is_file()
    try:
        manifest = load_manifest(s.out) or {}
    except CurateError:
        return False
    if manifest.get("status") != "complete":
        return False
    if s.command == "train grpo":
        return (s.out / "model").is_dir()
    if s.command == "train sft":
        return (s.out / "config.json").is_file()
    return True


# -- printing -----------------------------------------------------------------------------------


VERDICTS = {"complete": "complete: skipped", "resume": "resumes", "run": "runs", "rerun": "changed: re-runs"}


def describe(p: Plan) -> str:
    """The plan as text: each stage, what it needs, whether it is complete, and its command line."""
    lines = [f"recipe {p.name} ({p.source.path}){' --smoke' if p.smoke else ''} -> {p.out}"]
    if p.sets:
        lines.append("  --set " + " ".join(f"{k}={v}" for k, v in p.sets.items()))
    width = max(len(s.name) for s in p.stages)
    for i, s in enumerate(p.stages, 1):
        needs = f" <- {', '.join(s.needs)}" if s.needs else ""
        lines.append(f"{i:2d}. {s.name:{width}s}  {s.command:10s}  {VERDICTS[s.state]}{needs}")
        lines.append(f"      {shlex.join(_short(a, p.out) for a in s.argv())}")
    return "\n".join(lines)


def _short(arg: str, out: Path) -> str:
    return arg.replace(str(out), "$OUT")


# -- running ------------------------------------------------------------------------------------


def run(p: Plan, progress: bool = True, echo=print) -> dict:
    """Run the planned stages in order under OUT's lock; returns the final recipe.json."""
    from curate.store import lock, unlock

    p.out.mkdir(parents=True, exist_ok=True)
    fd = lock(p.out)
    try:
        _decide(p)  # again: another process may have run stages before we held the lock
        state = _initial_state(p)
        if p.uses_tiny_model and not (p.out / TINY_MODEL / "config.json").is_file():
            from curate.tiny import build_tiny_model

            echo(f"building the tiny student in {p.out / TINY_MODEL}")
            build_tiny_model(p.out / TINY_MODEL)
        t0 = time.time()
        for i, s in enumerate(p.stages, 1):
            if s.state == "complete":
                echo(f"[{i}/{len(p.stages)}] {s.name}: complete, skipped")
                continue
            echo(f"[{i}/{len(p.stages)}] {s.name} ({VERDICTS[s.state]}): "
                 f"{shlex.join(_short(a, p.out) for a in s.argv())}")
            _run_stage(p, s, state, progress)
        state.update(status="complete", seconds=round(time.time() - t0, 2))
        state["report"] = final_report(p.out, progress, echo)
        _save(p.out, state)
        return state
    except KeyboardInterrupt:
        _finish(p.out, "interrupted")
        raise
    except BaseException as e:
        _finish(p.out, "failed", str(e)[:500] or type(e).__name__)
        raise
    finally:
        unlock(fd)


def _initial_state(p: Plan) -> dict:
    from curate.store import now, package_versions

    old = read_state(p.out)
    stages = {}
    for s in p.stages:
        record = (old.get("stages") or {}).get(s.name)
        if not record or record.get("fingerprint") != s.fingerprint:  # new or changed
            record = {"status": "pending", "fingerprint": s.fingerprint}
        if s.state == "rerun":  # until the changed stage completes, every attempt replaces the old output
            record["overwrite"] = True
        stages[s.name] = record
        stages[s.name].update(command=s.command, needs=s.needs, out=str(s.out) if s.out else None,
                              argv=s.argv())
    state = {"recipe": {"name": p.name, "path": str(p.source.path), "sha256": p.source.sha256},
             "smoke": p.smoke, "sets": p.sets, "vars": p.vars, "status": "running",
             "created": old.get("created") or now(), "versions": package_versions(),
             "order": [s.name for s in p.stages], "stages": stages}
    _save(p.out, state)
    return state


def _save(out: Path, state: dict) -> None:
    from curate.store import now, write_json

    write_json(out / "recipe.json", {**state, "updated": now()}, fsync=True)


def _finish(out: Path, status: str, error: str | None = None) -> None:
    state = read_state(out)
    if state:
        state["status"] = status
        if error:
            state["error"] = error
        _save(out, state)


def _run_stage(p: Plan, s: Stage, state: dict, progress: bool) -> None:
    """One stage through curate.api: recorded as running (with its fingerprint) first, so a
    kill at any moment leaves a record that says what the folder holds."""
    from curate.api import options_class
    from curate.options import flat

    record = state["stages"][s.name]
    overwrite = s.state == "rerun"
    names = {x.name for x in flat(options_class(s.function))}
    kwargs = dict(s.values)
    if "out" in names:
        kwargs["out"] = str(s.out)
    if "progress" in names:
        kwargs["progress"] = progress
    if "command" in names:
        kwargs["command"] = s.argv()
    if s.command == "train sft":
        resume = not overwrite and _has_checkpoint(s.out)
        kwargs.update({"resume": True} if resume else {"overwrite": True} if overwrite else {})
    elif overwrite and "overwrite" in names:
        kwargs["overwrite"] = True
    record.update(status="running", fingerprint=s.fingerprint, started=_now())
    record.pop("error", None)
    _save(p.out, state)
    t0 = time.time()
    try:
        result = call(s.function, kwargs)
    except KeyboardInterrupt:
        record.update(status="interrupted")
        _save(p.out, state)
        raise
    except BaseException as e:
        record.update(status="failed", error=str(e)[:500] or type(e).__name__)
        _save(p.out, state)
        raise
    status = "complete" if output_complete(s) else (result.status or "incomplete")
    record.update(status=status, seconds=round(time.time() - t0, 2), counts=result.counts)
    if status == "complete":
        record.pop("overwrite", None)
    _save(p.out, state)
    if status == "interrupted":
        raise KeyboardInterrupt
    if status != "complete":
        raise CurateError(f"stage {s.name}: the {s.command} run is {status} ({s.out}); re-run curate run to resume")
    s.state = "complete"


def call(function: str, kwargs: dict):
    """The curate.api function, with its options."""
    from curate import api

    return getattr(api, function)(**kwargs)


def _has_checkpoint(out: Path) -> bool:
    from curate.train import last_checkpoint

    return out.is_dir() and last_checkpoint(out) is not None


def _now() -> str:
    from curate.store import now

    return now()


def final_report(out: Path, progress: bool, echo=print) -> str | None:
    """The page across the stages (`curate report OUT`): the one place `curate run` asks
    curate.report for it. A report that cannot be made is a note, not a failed run."""
    from curate import api

    try:
        path = api.report(run_dir=str(out), out=str(out / "report.html"), progress=progress).out
    except CurateError as e:
        echo(f"report: not written ({e})")
        return None
    echo(f"report: {path}")
    return str(path)
