"""One kind of error the user can fix: a one-line message, exit code 2, nothing written."""

import functools


class CurateError(Exception):
    """Bad input or a bad option. The CLI prints `error: <message>` and exits 2."""

    exit_code = 2


def one_line(text: object) -> str:
    """`text` on one line (a library's multi-line message, folded)."""
    return " ".join(str(text).split())


def load_yaml(text: str, shown: str, *, what: str = "bad YAML", first_line: int = 1):
    """The YAML document in `text`, or a CurateError `shown:LINE:COLUMN: what: problem` on
    one line (`first_line`: the line of `shown` that `text` starts on)."""
    import yaml

    try:
        return yaml_data(text)
    except yaml.YAMLError as e:
        raise yaml_error(e, text, shown, what=what, first_line=first_line) from None


def yaml_data(text: str):
    """The one YAML document in `text` (curate's strict loader); a yaml.YAMLError if it is not one."""
    loader = yaml_loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


@functools.cache
def _loader_class():
    import yaml

    class Loader(yaml.SafeLoader):
        """yaml.SafeLoader whose every failure is a YAMLError with a position: a value its
        constructor cannot read (`!!int abc`, `2020-13-45`, `0x_`) and an alias inside its
        own anchor (`&a [*a]`, a structure that never ends) included."""

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                if getattr(self.anchors.get(event.anchor), "end_mark", True) is None:  # still being composed
                    raise yaml.composer.ComposerError(None, None, f"the alias *{event.anchor} is inside its own "
                                                                  "anchor", event.start_mark)
            return super().compose_node(parent, index)

        def construct_object(self, node, deep=False):
            try:
                return super().construct_object(node, deep=deep)
            except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as e:
                raise yaml.constructor.ConstructorError(
                    None, None, f"cannot read {node.value!r} as {node.tag.rsplit(':', 1)[-1]} ({e})",
                    node.start_mark) from None

    return Loader


def yaml_loader(text: str):
    """A safe YAML loader of `text` whose failures are all YAMLErrors (see `yaml_error`)."""
    return _loader_class()(text)


def yaml_error(e, text: str, shown: str, *, what: str = "bad YAML", first_line: int = 1) -> CurateError:
    """The YAMLError `e` (from reading `text`) as a CurateError `shown:LINE:COLUMN: what: problem`."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    if mark is not None:
        line, column = mark.line, mark.column
    elif isinstance(getattr(e, "position", None), int):  # a ReaderError: a character YAML does not allow
        before = text[: e.position]
        line, column = before.count("\n"), e.position - (before.rfind("\n") + 1)
    else:
        line = column = None
    where = f"{shown}:{line + first_line}:{column + 1}" if line is not None else shown
    character = getattr(e, "character", None)  # a ReaderError's: a code (bytes) or a str
    if isinstance(character, str):
        character = ord(character)
    problem = getattr(e, "problem", None) or (f"the character U+{character:04X} is not allowed"
                                              if isinstance(character, int) else e)
    return CurateError(f"{where}: {what}: {one_line(problem)}")
