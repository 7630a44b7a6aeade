"""curate: build DeepSeek-R1-style training data and the students trained on it."""

from pathlib import Path as _Path

__version__ = "0.1.0"

# Installed, filters/, train/, prompts/ and data_cards/ live inside this package
# (setuptools package-dir). Run from a source checkout, where Python finds this folder
# first, the same names resolve to the checkout's top-level folders.
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "filters").is_dir():
    __path__.append(str(_checkout))  # noqa: F821 (package __path__)
