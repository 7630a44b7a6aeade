"""curate: build DeepSeek-R1-style training data and the students trained on it.

The Python API is the command line's: `curate.generate`, `filter`, `select`, `mix`,
`card`, `publish`, `report`, `train_sft`, `train_grpo`, `evaluate` and `run_recipe` (curate/api.py),
each taking its options as keyword arguments and returning a `Result`. They load on
first use, so `import curate` stays light. Where a function shares its name with a stage
module (curate.generate, ...), the name is the function; reach the module with
`from curate.generate import ...` or `importlib.import_module("curate.generate")`."""

import sys as _sys
import types as _types

__version__ = "0.1.0"

__all__ = ["generate", "filter", "select", "mix", "card", "publish", "report", "audit", "train_sft", "train_grpo",
           "evaluate", "run_recipe", "Result", "CurateError"]


def __getattr__(name: str):
    if name in __all__:
        from curate import api

        value = {"Result": api.Result, "CurateError": api.CurateError}.get(name) or api.documented(name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'curate' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _Uninstalled:
    """Last on sys.meta_path: from a checkout that is not installed, the top-level folders
    that the install maps into this package (pyproject's package-dir) are missing; say so."""

    FOLDERS = {"curate.filters": "filters", "curate.train": "train", "curate.prompts": "prompts",
               "curate.data_cards": "data_cards"}

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name in cls.FOLDERS:
            raise ModuleNotFoundError(f"no module {name}: the checkout's {cls.FOLDERS[name]}/ folder becomes {name} "
                                      "when curate is installed; run `pip install -e .` in the checkout", name=name)
        return None


if _Uninstalled not in _sys.meta_path:
    _sys.meta_path.append(_Uninstalled)


class _Package(_types.ModuleType):
    """Importing a stage module (curate.generate) does not replace the function of that name."""

    def __setattr__(self, name, value):
        if name in __all__ and isinstance(value, _types.ModuleType):
            return
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package
