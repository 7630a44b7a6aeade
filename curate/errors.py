"""One kind of error the user can fix: a one-line message, exit code 2, nothing written."""

import functools

ALIASED_VALUES = 100_000  # the most values a YAML document's aliases may add (each alias adds its anchor's values)
MAX_DEPTH = 100  # the deepest nesting of lists and mappings a YAML document may have


class CurateError(Exception):
    """Bad input or a bad option. The CLI prints `error: <message>` and exits 2."""

    exit_code = 2


def one_line(text: object) -> str:
    """`text` on one line (a library's multi-line message, folded)."""
    return " ".join(str(text).split())


def load_yaml(text: str, shown: str, *, what: str = "bad YAML", first_line: int = 1, node: bool = False):
    """The YAML document in `text` (with `node`: (the document, its root node), see `yaml_node`),
    or a CurateError `shown:LINE:COLUMN: what: problem` on one line (`first_line`: the line of
    `shown` that `text` starts on)."""
    import yaml

    try:
        data, root = yaml_node(text)
    except yaml.YAMLError as e:
        raise yaml_error(e, text, shown, what=what, first_line=first_line) from None
    return (data, root) if node else data


def yaml_data(text: str):
    """The one YAML document in `text` (curate's strict loader); a yaml.YAMLError if it is not one."""
    return yaml_node(text)[0]


def yaml_node(text: str) -> tuple:
    """(the one YAML document in `text`, its root node): the nodes' `start_mark`s say where each
    value is written (None for an empty document); a yaml.YAMLError if it is not one document."""
    loader = yaml_loader(text)
    try:
        node = loader.get_single_node()
        return (loader.construct_document(node) if node is not None else None), node
    finally:
        loader.dispose()


@functools.cache
def _loader_class():
    import yaml

    class Loader(yaml.SafeLoader):
        """yaml.SafeLoader whose every failure is a YAMLError with a position: a value its
        constructor cannot read (`!!int abc`, `2020-13-45`, `0x_`), an alias inside its own
        anchor (`&a [*a]`, a structure that never ends), aliases that would expand to more
        than ALIASED_VALUES values (nested aliases, a "billion laughs": a few lines that
        become billions of values for whoever walks them) and nesting deeper than MAX_DEPTH
        (Python's recursion limit) included."""

        def __init__(self, stream):
            super().__init__(stream)
            self.sizes: dict[int, int] = {}  # id(node) -> its values with every alias expanded
            self.aliased = 0  # the values the document's aliases add
            self.depth = 0

        def compose_node(self, parent, index):
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent):
                node = self.anchors.get(event.anchor)
                if node is not None and id(node) not in self.sizes:  # still being composed
                    raise yaml.composer.ComposerError(None, None, f"the alias *{event.anchor} is inside its own "
                                                                  "anchor", event.start_mark)
                self.aliased += self.sizes.get(id(node), 0)
                if self.aliased > ALIASED_VALUES:
                    raise yaml.composer.ComposerError(None, None, f"the aliases expand to more than {ALIASED_VALUES:,} "
                                                                  "values (nested aliases)", event.start_mark)
                return super().compose_node(parent, index)
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                                  event.start_mark)
            node = super().compose_node(parent, index)
            self.depth -= 1
            children = (node.value if isinstance(node, yaml.SequenceNode) else
                        [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else ())
            self.sizes[id(node)] = 1 + sum(self.sizes[id(child)] for child in children)
            return node

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
