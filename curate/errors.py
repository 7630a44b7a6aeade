"""One kind of error the user can fix: a one-line message, exit code 2, nothing written."""


class CurateError(Exception):
    """Bad input or a bad option. The CLI prints `error: <message>` and exits 2."""

    exit_code = 2
