"""The dataset card of a mixture: `curate card DIR` (and the end of `curate mix`).

Renders data_cards/dataset_card.md.jinja into DIR/README.md: Hub YAML metadata
(configs/data_files, license, language, task_categories, size_categories, tags,
pretty_name), then the sources, teachers, templates, sampling, the filter funnel,
decontamination, rejection sampling, the mixture composition and token lengths, how to
load it and the exact commands. Everything comes from DIR/manifest.json (written by
`curate mix`, which carries the lineage of every source) and DIR/data/*.parquet.

Plots (matplotlib, Agg) go to DIR/plots/ and are linked from the card as
`plots/<name>.png`: token_lengths.png always, funnel.png when a source was filtered by
curate, pass_rate.png when one was rejection-sampled with a correctness filter.

The card is checked offline (`validate`): huggingface_hub parses the YAML into
DatasetCardData; the fields must be there and sensible, every `data_files` glob must
match files in DIR, and every embedded plot must exist. huggingface_hub's
RepoCard.validate() posts the card to the Hub and needs the network, so it is not used.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import polars as pl

from curate.errors import CurateError
from curate.options import opt
from curate.store import atomic_path, locked, now, read_manifest, update_manifest, write_text_atomic

TEMPLATE = "dataset_card.md.jinja"
TAGS = ["reasoning", "synthetic", "curate", "chain-of-thought"]
SIZE_BUCKETS = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]


@dataclass
class CardOptions:
    mix_dir: str = opt(help="A `curate mix` output folder.", argument=True, path="dir")
    license: str | None = opt(None, "Override the licence recorded by mix.")
    language: tuple[str, ...] | None = opt(None, "Override the languages (comma list).", comma=True)
    pretty_name: str | None = opt(None, "Override the title.")


def size_category(rows: int) -> str:
    return next((label for limit, label in SIZE_BUCKETS if rows < limit), "n>1T")


def read_mix(out: Path) -> dict:
    manifest = read_manifest(out, "mix", "give a `curate mix` output folder")
    return manifest


def metadata(manifest: dict, license: str, language: list[str], pretty_name: str):
    from huggingface_hub import DatasetCardData

    splits = manifest.get("splits") or {"train": 0}
    rows = sum(splits.values())
    return DatasetCardData(
        license=license, language=language, task_categories=["text-generation"],
        size_categories=[size_category(rows)], tags=TAGS, pretty_name=pretty_name,
        configs=[{"config_name": "default",
                  "data_files": [{"split": s, "path": f"data/{s}-*"} for s in splits]}])


def token_stats(out: Path) -> pl.DataFrame:
    files = sorted((out / "data").glob("*.parquet"))
    if not files:
        raise CurateError(f"{out}/data: no Parquet files")
    df = pl.concat([pl.read_parquet(f, columns=["domain", "num_tokens"]) for f in files])
    return df


def write_card(out: str | os.PathLike, license: str | None = None, language: list[str] | None = None,
               pretty_name: str | None = None) -> Path:
    """(Re)write the card of a mix folder under its lock, and record it in its manifest
    (`card`); returns the card's path."""
    out = Path(out)
    read_mix(out)
    with locked(out):
        record = render_card(out, license=license, language=language, pretty_name=pretty_name)
        update_manifest(out, card=record)
    return out / "README.md"


def render_card(out: str | os.PathLike, license: str | None = None, language: list[str] | None = None,
                pretty_name: str | None = None) -> dict:
    """Render README.md and plots/ into a mix folder (its writer holds the lock) and check
    the card offline; returns what the manifest records about the card."""
    import jinja2

    out = Path(out)
    manifest = read_mix(out)
    cfg = manifest.get("config") or {}
    license = license or cfg.get("license") or "other"
    language = language or cfg.get("language") or ["en"]
    pretty_name = pretty_name or cfg.get("pretty_name") or out.name
    tokens = token_stats(out)
    stats = (tokens.group_by("domain").agg(
        pl.len().alias("rows"), pl.col("num_tokens").mean().alias("mean"),
        pl.col("num_tokens").median().alias("median"),
        pl.col("num_tokens").quantile(0.95, "nearest").alias("p95"), pl.col("num_tokens").max().alias("max"))
        .sort("domain"))
    sources = manifest.get("sources") or []
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    plot_token_lengths(tokens, plots / "token_lengths.png")
    has_funnel = plot_funnel(sources, plots / "funnel.png")
    has_pass_rates = plot_pass_rates(sources, plots / "pass_rate.png")

    data = metadata(manifest, license, language, pretty_name)
    loader = jinja2.FunctionLoader(lambda name: resources.files("curate.data_cards").joinpath(name).read_text())
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, loader=loader)
    text = env.get_template(TEMPLATE).render(
        metadata_yaml=data.to_yaml() + "\n", pretty_name=pretty_name, rows=sum(manifest["splits"].values()),
        splits=manifest["splits"], sources=known(sources), token_stats=stats.to_dicts(),
        license=license, tokenizer=known(manifest.get("tokenizer")), seed=known(cfg.get("seed")),
        test_size=cfg.get("test_size"), has_funnel=has_funnel, has_pass_rates=has_pass_rates,
        command=" ".join(manifest.get("command") or []) or UNKNOWN, versions=known(manifest.get("versions") or {}),
        created=known(manifest.get("created")),
        repo_id=f"<user>/{pretty_name}")
    text = re.sub(r"\n{3,}", "\n\n", text)  # the template's loops leave runs of blank lines
    write_text_atomic(out / "README.md", text)
    validate(out)
    plotted = [p.name for p in sorted(plots.glob("*.png"))]
    return {"license": license, "language": language, "pretty_name": pretty_name, "plots": plotted, "written": now()}


class _Unknown:
    """A lineage field the manifests do not hold: renders as "unknown", is false, and any
    field or item of it is unknown too, so no template line depends on one kind of lineage."""

    def __bool__(self):
        return False

    def __str__(self):
        return "unknown"

    def __format__(self, spec):
        return "unknown"

    def __getattr__(self, key):
        if key.startswith("__"):
            raise AttributeError(key)
        return self

    def __getitem__(self, key):
        return self

    def __call__(self, *args, **kwargs):
        return self

    def __iter__(self):
        return iter(())

    def __len__(self):
        return 0


UNKNOWN = _Unknown()


def known(value):
    """A manifest value as the template reads it: every field optional (absent or null: UNKNOWN)."""
    if value is None:
        return UNKNOWN
    if isinstance(value, dict) and not isinstance(value, _Known):
        return _Known(value)
    if isinstance(value, list):
        return [known(v) for v in value]
    return value


class _Known(dict):
    """A manifest record whose fields read as attributes or items; a missing or null one is UNKNOWN."""

    def __getattr__(self, key):
        if key.startswith("__"):
            raise AttributeError(key)
        return known(self.get(key))

    def __getitem__(self, key):
        return known(self.get(key))


def validate(out: str | os.PathLike) -> dict:
    """Offline check of DIR/README.md; raises CurateError naming the first problem,
    returns the parsed metadata."""
    from huggingface_hub import DatasetCard

    out = Path(out)
    card_path = out / "README.md"
    if not card_path.is_file():
        raise CurateError(f"{out}: no README.md; run `curate card {out}`")
    try:
        card = DatasetCard(card_path.read_text())
    except Exception as e:  # noqa: BLE001 - bad YAML and the like
        raise CurateError(f"{card_path}: the card's YAML metadata does not parse ({e})") from None
    meta = card.data.to_dict()
    for key in ("license", "language", "task_categories", "size_categories", "tags", "pretty_name", "configs"):
        if not meta.get(key):
            raise CurateError(f"{card_path}: metadata field `{key}` is missing or empty")
    files = [str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()]
    for config in meta["configs"]:
        for entry in config.get("data_files") or []:
            globs = entry["path"] if isinstance(entry["path"], list) else [entry["path"]]
            for g in globs:
                if not any(fnmatch.fnmatch(f, g) for f in files):
                    raise CurateError(f"{card_path}: data_files {entry['split']}: {g!r} matches no file in {out}")
    splits = (read_mix(out).get("splits") or {})
    rows = sum(splits.values())
    if meta["size_categories"] != [size_category(rows)]:
        raise CurateError(f"{card_path}: size_categories {meta['size_categories']} do not fit {rows:,} rows")
    for link in re.findall(r"!\[[^\]]*\]\((plots/[^)]+)\)", card.text):
        if not (out / link).is_file():
            raise CurateError(f"{card_path}: embedded plot {link} is missing")
    return meta


# -- plots ---------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png", metadata={"Software": None})
    _pyplot().close(fig)


def plot_token_lengths(tokens: pl.DataFrame, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    top = tokens["num_tokens"].max() or 1
    bins = 40
    for domain in sorted(tokens["domain"].unique().to_list()):
        values = tokens.filter(pl.col("domain") == domain)["num_tokens"].to_numpy()
        ax.hist(values, bins=bins, range=(0, top), histtype="step", linewidth=1.6, label=f"{domain} ({len(values):,})")
    ax.set_xlabel("tokens per row (message contents)")
    ax.set_ylabel("rows")
    ax.set_title("Token length per domain")
    ax.legend(frameon=False)
    _save(fig, path)


def plot_funnel(sources: list[dict], path: Path) -> bool:
    funnels = [(s["name"], s["lineage"]["filter"]["funnel"]) for s in sources
               if (s.get("lineage") or {}).get("filter") and s["lineage"]["filter"].get("funnel")]
    if not funnels:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(len(funnels), 1, figsize=(7, 0.45 * sum(len(f["steps"]) + 2 for _, f in funnels) + 0.8),
                             squeeze=False)
    for ax, (name, funnel) in zip(axes[:, 0], funnels):
        labels = ["rows in"] + [f"after {s['filter']}" for s in funnel["steps"]]
        values = [funnel["rows_in"]] + [s["kept"] for s in funnel["steps"]]
        bars = ax.barh(labels[::-1], values[::-1], color="#4c72b0")
        for bar, v in zip(bars, values[::-1]):
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v:,}", va="center", fontsize=8)
        ax.set_title(f"Filter funnel: {name}")
        ax.set_xlabel("rows")
        ax.set_xlim(0, max(values) * 1.15 or 1)
    fig.tight_layout()
    _save(fig, path)
    return True


def plot_pass_rates(sources: list[dict], path: Path) -> bool:
    hists = [(s["name"], s["lineage"]["pass_rates"]) for s in sources
             if (s.get("lineage") or {}).get("pass_rates")]
    if not hists:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    width = 0.8 / len(hists)
    for i, (name, hist) in enumerate(hists):
        xs = [h["low"] + (i + 0.5) * width * (h["high"] - h["low"]) + 0.1 * (h["high"] - h["low"]) for h in hist]
        ax.bar(xs, [h["problems"] for h in hist], width=width * (hist[0]["high"] - hist[0]["low"]), label=name)
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("pass rate (correct / generated samples per problem)")
    ax.set_ylabel("problems")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0, 1)
    ax.set_title("Pass rate per problem" + (f": {hists[0][0]}" if len(hists) == 1 else ""))
    if len(hists) > 1:
        ax.legend(frameon=False, loc="upper center")
    _save(fig, path)
    return True
