"""One kind of error the user can fix: a one-line message, exit code 2, nothing written."""


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
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        if mark is not None:
            line, column = mark.line, mark.column
        elif isinstance(getattr(e, "position", None), int):  # a ReaderError: a character YAML does not allow
            before = text[: e.position]
            line, column = before.count("\n"), e.position - (before.rfind("\n") + 1)
        else:
            line = column = None
        where = f"{shown}:{line + first_line}:{column + 1}" if line is not None else shown
        problem = getattr(e, "problem", None) or (f"character {e.character!r} is not allowed"
                                                  if hasattr(e, "character") else e)
        raise CurateError(f"{where}: {what}: {one_line(problem)}") from None
