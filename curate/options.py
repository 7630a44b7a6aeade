"""Options dataclasses as the one declaration of every option: its default, its help and
its command-line form. A stage declares `field = opt(default, help, **cli)`; from that,
`params` builds the click options of its command, `build` turns keyword arguments (or
the given command-line values) into the dataclass, and `describe` writes the argument
list of its Python function's docstring. A nested options dataclass (generate's input and
engine) is flattened: its fields are options of the command and keyword arguments of the
function. The idea is TRL's HfArgumentParser; click does the parsing."""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import MISSING

# Metadata keys `opt` accepts (besides help):
#   cli       the option name ("--map"); default: --field-name; False: not on the command line
#   name      the keyword name of a nested dataclass's field (default: the field name)
#   short     a short alias ("-n")
#   argument  a positional argument (METAVAR) instead of an option
#   choices   allowed values; min / max / min_open: a numeric range
#   path      "file" or "dir": a click.Path of that kind
#   pairs     repeatable KEY=VALUE items read into a dict; the value is the form shown in errors
#   parse     "yaml": pair values read as YAML (numbers, booleans, lists)
#   comma     one comma-separated string read into a tuple
#   negatable a bool as --x/--no-x (also the form of every bool whose default is None)
#   metavar, hidden, show_default: as click's
KEYS = {"cli", "name", "short", "argument", "choices", "min", "max", "min_open", "path", "pairs", "parse", "comma",
        "metavar", "hidden", "show_default", "nested", "negatable", "shown"}


def opt(default=MISSING, help: str = "", *, factory=None, **cli) -> dataclasses.Field:
    """A dataclass field with its help and command-line form (see KEYS)."""
    unknown = set(cli) - KEYS
    if unknown:
        raise TypeError(f"opt(): unknown keys {sorted(unknown)}")
    metadata = {"help": help, **cli}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    if isinstance(default, (list, dict, set)):
        value = default
        metadata["shown"] = repr(value)
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def nested(cls, help: str = "", required: bool = False) -> dataclasses.Field:
    """A field holding another options dataclass, flattened into the command's options."""
    if required:
        return dataclasses.field(metadata={"help": help, "nested": True})
    return dataclasses.field(default_factory=cls, metadata={"help": help, "nested": True})


def pairs(items, option: str, form: str = "KEY=VALUE", parse=str) -> dict:
    """Repeatable KEY=VALUE options as a dict; a malformed one is one line naming the option."""
    from curate.errors import CurateError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or (not value and parse is str):
            raise CurateError(f"{option} {item!r}: expected {form}")
        try:
            out[key] = parse(value)
        except CurateError as e:  # a value its parser refuses
            raise CurateError(f"{option} {item}: {e}") from None
    return out


def yaml_value(text: str):
    """A KEY=VALUE option's value read as YAML (numbers, booleans, lists), or a CurateError."""
    import yaml

    from curate.errors import CurateError, one_line, yaml_data

    try:
        return yaml_data(text)
    except yaml.YAMLError as e:
        raise CurateError(f"not a YAML value ({one_line(getattr(e, 'problem', None) or e)})") from None


@dataclasses.dataclass
class Flat:
    """One option of a command: a (possibly nested) dataclass field under its keyword name."""

    name: str  # keyword argument and click parameter name
    field: dataclasses.Field
    type: object  # the resolved annotation
    parent: str | None  # the nested field it belongs to

    @property
    def meta(self) -> dict:
        return self.field.metadata

    @property
    def required(self) -> bool:
        return self.field.default is MISSING and self.field.default_factory is MISSING

    @property
    def default(self):
        return self.field.default  # MISSING for factories and required fields

    @property
    def on_cli(self) -> bool:
        return self.meta.get("cli", True) is not False

    @property
    def option(self) -> str:
        """The command-line name: --flag or the METAVAR of an argument."""
        if self.meta.get("argument"):
            return self.meta.get("metavar") or self.name.upper()
        return self.meta.get("cli") or "--" + self.name.replace("_", "-")


def flat(cls) -> list[Flat]:
    """The options of a dataclass, nested ones flattened, in declaration order."""
    hints = typing.get_type_hints(cls)
    out: list[Flat] = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("nested"):
            sub = hints[f.name]
            sub_hints = typing.get_type_hints(sub)
            out += [Flat(g.metadata.get("name", g.name), g, sub_hints[g.name], f.name) for g in dataclasses.fields(sub)]
        else:
            out.append(Flat(f.name, f, hints[f.name], None))
    names = [x.name for x in out]
    if len(names) != len(set(names)):
        raise TypeError(f"{cls.__name__}: two options share a name")
    return out


def build(cls, options=None, **kwargs):
    """An options dataclass from an instance or from keyword arguments (a nested dataclass's
    fields flat, or under its field's name the nested object itself or a dict of its fields)."""
    if options is not None:
        if kwargs:
            raise TypeError("pass an options object or keyword arguments, not both")
        if not isinstance(options, cls):
            raise TypeError(f"expected {cls.__name__}, got {type(options).__name__}")
        return options
    hints = typing.get_type_hints(cls)
    containers = {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.metadata.get("nested")}
    fields = {x.name: x for x in flat(cls)}
    top: dict = {}
    parts: dict[str, dict] = {}
    for key, value in kwargs.items():
        x = fields.get(key)
        if x is not None and isinstance(value, os.PathLike) and _base_type(x.type) is str:
            value = os.fspath(value)  # a Path where the option is a path string
        if key in containers and isinstance(value, containers[key]):
            top[key] = value
        elif key in containers and isinstance(value, dict):  # engine={"base_url": ...}: the group's fields
            parts.setdefault(key, {}).update(value)
        elif x is None:
            raise TypeError(f"{cls.__name__}: unknown option {key!r} (options: {', '.join(fields)})")
        elif x.parent is None:
            top[key] = value
        else:
            parts.setdefault(x.parent, {})[x.field.name] = value
    missing = [x.name for x in fields.values() if x.required and (
        x.name not in top if x.parent is None else x.parent not in top and x.field.name not in parts.get(x.parent, {}))]
    if missing:
        raise TypeError(f"{cls.__name__}: missing required option {missing[0]!r}")
    for parent, values in parts.items():
        top[parent] = dataclasses.replace(top[parent], **values) if parent in top else containers[parent](**values)
    return cls(**top)


# --- the command line -----------------------------------------------------------------


def params(cls) -> list:
    """click parameters for every command-line field of `cls`."""
    return [_param(x) for x in flat(cls) if x.on_cli]


def _base_type(tp):
    """The annotation without its `| None`."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        return next(a for a in args if a is not type(None))
    return tp


def _param(x: Flat):
    import click

    m = x.meta
    tp = _base_type(x.type)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    kw: dict = {"help": m.get("help") or None, "hidden": m.get("hidden", False)}
    if m.get("metavar"):
        kw["metavar"] = m["metavar"]
    default = x.default
    click_type = _click_type(x, tp, args)

    if m.get("argument"):
        return click.Argument([x.name], type=click_type, required=x.required, metavar=x.option)

    decls = [x.option, x.name]
    if m.get("short"):
        decls.insert(0, m["short"])
    if tp is bool:
        if default is None or m.get("negatable"):  # --x/--no-x; None: "automatic"
            name = x.option.removeprefix("--")
            decls = [f"--{name}/--no-{name}", x.name]
            kw.update(default=default, show_default=default is not None)
        elif default is True:  # declared as --no-x
            kw.update(is_flag=True, flag_value=False, default=True, show_default=False)
        else:
            kw.update(is_flag=True, default=False)
        return click.Option(decls, **kw)
    if m.get("pairs") or tp is dict or (origin in (tuple, list) and args[-1:] == (Ellipsis,) and not m.get("comma")) \
            or origin is list:
        kw.update(multiple=True)
        if m.get("pairs"):
            kw.setdefault("metavar", m["pairs"])
            kw["callback"] = _pairs_callback(m["pairs"], m.get("parse"))
        else:
            kw["callback"] = lambda ctx, param, value: (list if origin is list else tuple)(value)
        return click.Option(decls, type=click_type, required=x.required, **kw)
    if m.get("comma"):
        kw["callback"] = lambda ctx, param, value: (value if isinstance(value, tuple) or value is None
                                                      else tuple(s.strip() for s in value.split(",") if s.strip()))
        default = ",".join(default) if isinstance(default, tuple) else default
        click_type = str
    elif origin is tuple:  # a fixed number of values, e.g. LOW HIGH
        kw.update(nargs=len(args), default=default if default is not MISSING else None,
                  callback=lambda ctx, param, value: tuple(value) if value else None)
        return click.Option(decls, type=click_type, **kw)
    show = m.get("show_default", default not in (None, MISSING))
    if default is MISSING:
        default = None
    return click.Option(decls, type=click_type, default=default, show_default=show, required=x.required, **kw)


def _click_type(x: Flat, tp, args):
    import click

    m = x.meta
    if m.get("choices"):
        return click.Choice(list(m["choices"]))
    if m.get("path"):
        return click.Path(file_okay=m["path"] != "dir", dir_okay=m["path"] != "file")
    if tp in (tuple, list) or typing.get_origin(tp) in (tuple, list):
        tp = args[0] if args else str
    if tp is int and ("min" in m or "max" in m):
        return click.IntRange(min=m.get("min"), max=m.get("max"))
    if tp is float and ("min" in m or "max" in m):
        return click.FloatRange(min=m.get("min"), max=m.get("max"), min_open=m.get("min_open", False))
    return {int: int, float: float}.get(tp, str)


def _pairs_callback(form: str, parse: str | None):
    def callback(ctx, param, value):
        option = param.opts[0]
        if parse == "yaml":
            return pairs(value, option, form, parse=yaml_value)
        return pairs(value, option, form)

    return callback


def given(ctx, values: dict) -> dict:
    """The values the command line gave, without click's defaults: the dataclass supplies
    every default, so an option not given cannot override a recipe (train sft)."""
    from click.core import ParameterSource

    return {k: v for k, v in values.items() if ctx.get_parameter_source(k) not in (ParameterSource.DEFAULT, None)}


def argv(cls, values: dict) -> list[str]:
    """The command-line arguments that give `values` (keyword name -> value) to the command
    made from `cls`: the inverse of the click parameters above (a recipe's stage printed as
    the command a user would type). Options not on the command line are left out."""
    out: list[str] = []
    for x in flat(cls):
        if x.name not in values or not x.on_cli:
            continue
        value, m = values[x.name], x.meta
        tp = _base_type(x.type)
        if m.get("argument"):
            out.append(str(value))
        elif tp is bool:
            name = x.option.removeprefix("--")
            if x.default is None or m.get("negatable"):
                out.append(f"--{name}" if value else f"--no-{name}")
            elif value != x.default:
                out.append(x.option)  # a flag, or the --no-x of a default-true option
        elif value is None:
            continue
        elif isinstance(value, dict):
            out += [a for k, v in value.items() for a in (x.option, f"{k}={_cli_value(v)}")]
        elif m.get("comma"):
            out += [x.option, ",".join(map(str, value))]
        elif isinstance(value, (list, tuple)) and typing.get_origin(tp) is tuple and typing.get_args(tp)[-1:] != (...,):
            out += [x.option, *map(str, value)]  # a fixed number of values, e.g. LOW HIGH
        elif isinstance(value, (list, tuple)):
            out += [a for v in value for a in (x.option, str(v))]
        else:
            out += [x.option, str(value)]
    return out


def _cli_value(value) -> str:
    """A KEY=VALUE pair's value as the command line reads it back (YAML for non-strings)."""
    if isinstance(value, str):
        return value
    import json

    return json.dumps(value)


# --- the Python docstring -----------------------------------------------------------------


def describe(cls) -> str:
    """An "Arguments" section: every field, its type, default and help, and its option."""
    lines = [f"Arguments (keyword arguments, or one {cls.__module__}.{cls.__name__}):"]
    for x in flat(cls):
        tp = getattr(x.type, "__name__", None) if not typing.get_args(x.type) else None
        tp = tp or str(x.type).replace("typing.", "")
        if x.required:
            default = "required"
        elif x.default is MISSING:
            default = f"default {x.meta['shown']}" if "shown" in x.meta else "default: computed"
        else:
            default = f"default {x.default!r}"
        cli = f" [{x.option}]" if x.on_cli else ""
        lines.append(f"    {x.name} ({tp}, {default}){cli}: {x.meta.get('help') or ''}".rstrip(": "))
    return "\n".join(lines)
