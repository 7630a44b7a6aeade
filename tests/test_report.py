"""`curate report`: the page from a real filter run (planted traces through the real
chain), checked as HTML and in a real headless Chromium: its sections are there, the
sample browser runs, and model text that is HTML stays text."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pytest

from curate.report import write_report
from curate.schema import GENERATION_SCHEMA
from curate.store import RunStore
from helpers import curate

sys.path.insert(0, str(Path(__file__).parent))
from traces import planted_rows  # noqa: E402

XSS = "<script>document.title='pwned'</script><img src=x onerror=\"document.body.dataset.pwned='1'\">"
ZH = "首先，我们需要把所有的数量加起来，然后再检查一遍结果是否正确。"
CHAIN = "format,length,math,language,readability"
SECTIONS = ("summary", "funnel", "lengths", "pass-rates", "languages", "browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def generate_run(root: Path) -> Path:
    """tests/traces.py's planted traces (one per problem, one defect each), plus two more
    samples for four problems: a wrong answer, and a correct one whose text carries HTML
    and a Chinese sentence (dropped by language, after math: correct, rejected)."""
    rows, _ = planted_rows()
    extra = []
    for r in rows[:4]:
        wrong = dict(r, sample_index=1, sample_id=f"{r['problem_id']}:teacher:1",
                     completion=r["completion"].replace("\\boxed{", "\\boxed{9999"))
        html = dict(r, sample_index=2, sample_id=f"{r['problem_id']}:teacher:2",
                    completion=r["completion"] + "\n" + ZH + "\n" + XSS)
        extra += [wrong, html]
    store = RunStore(root, "generate")
    store.open(overwrite=False)
    store.write_shard(pa.Table.from_pylist(rows + extra, schema=GENERATION_SCHEMA))
    store.write_manifest({"config": {"model": "teacher", "backend": "vllm", "template": {"name": "reasoning_chat"},
                                     "sampling": {"n": 3}}, "status": "complete"})
    store.close()
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("report")
    gen = generate_run(root / "generate")
    curate("filter", "--input", gen, "--out", root / "filter", "--filters", CHAIN, "--no-progress")
    return gen, root / "filter"


class Page(HTMLParser):
    """Tags, ids and resource URLs of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.ids, self.urls, self.tags, self.classes = set(), [], [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        self.ids.add(a.get("id"))
        self.classes += (a.get("class") or "").split()
        for key in ("src", "href", "action", "data"):
            if a.get(key):
                self.urls.append((tag, a[key]))


def test_the_page_is_self_contained_and_escapes_model_text(runs, tmp_path):
    _, filtered = runs
    out = tmp_path / "page.html"
    r = curate("report", filtered, "--out", out, "--no-progress")
    assert f"report: {out}" in r.stdout
    text = out.read_text()
    page = Page(text)
    assert set(SECTIONS) <= page.ids
    assert "<th>teacher</th><td>teacher (vllm) · template reasoning_chat" in text  # from the generate run's manifest
    # no external resource: inline CSS/JS, images as data: URLs, links only within the page
    assert "link" not in page.tags and text.count("<script") == 2
    assert all(url.startswith(("data:image/png;base64,", "#")) for _, url in page.urls), page.urls
    assert sum(1 for tag, url in page.urls if tag == "img") == 2  # length and pass-rate plots
    # the untrusted text is nowhere in the file as markup: only as escaped JSON
    assert "<script>document.title" not in text and "onerror=" not in text.replace("onerror=\\", "")
    data = json.loads(text.split('id="browser-data">', 1)[1].split("</script>", 1)[0])
    assert any(XSS in t["completion"] for p in data for t in p["kept"] + p["rejected"])
    # the funnel: one row per filter of the chain, as the manifest says
    funnel = json.loads((filtered / "manifest.json").read_text())["funnel"]
    assert text.count('class="funnel-step"') == len(CHAIN.split(","))
    assert f'<th class="n">{funnel["rows_in"]}</th>' in text and "wrong answer: 5" in text
    # pass rates: gsm-00 had 3 samples: kept, wrong, correct but mixed-language → 2/3
    assert "<tr><td>gsm-00</td><td class=\"n\">3</td><td class=\"n\">2</td><td class=\"n\">0.67</td></tr>" in text
    assert "13 correct of 22 generated" in text
    # languages from the language filter's scores: the planted zh and ru sentences
    shares = [c for c in text.split('class="language-share"')[1:]]
    assert len(shares) == 3 and "<td>zh</td>" in text and "<td>ru</td>" in text
    # every problem in the browser (14 < --samples), those with kept and rejected traces first
    assert len(data) == 14 and {p["id"] for p in data[:2]} == {"gsm-00", "gsm-01"}
    reasons = {t["reason"] for p in data for t in p["rejected"]}
    assert "wrong answer" in reasons and any(r.startswith("foreign sentence (zh") for r in reasons)


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.skip("headless Chromium is not installed "
                    "(the Makefile apt-installs the `chromium` package, best effort)")
    return exe


def dump_dom(exe: str, url: str, profile: Path) -> tuple[str, str]:
    """The DOM after the page's JavaScript ran, and Chromium's log (console errors land there)."""
    r = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                        "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout, r.stderr


def test_in_headless_chromium_the_browser_runs_and_html_in_traces_stays_text(runs, tmp_path):
    exe = chromium()
    _, filtered = runs
    out = tmp_path / "page.html"
    write_report(filtered, out, progress=False)

    dom, log = dump_dom(exe, out.as_uri(), tmp_path / "profile")
    page = Page(dom)
    assert set(SECTIONS) <= page.ids and "current-problem" in page.ids  # rendered by the script
    assert "Uncaught" not in log, log[-2000:]
    assert 'data-problem-id="gsm-00"' in dom or 'data-problem-id="gsm-01"' in dom
    assert page.classes.count("trace") >= 2 and "why" in page.classes
    assert "problem 1 of 14" in dom

    # open the browser on gsm-00, only traces dropped by language: the HTML-carrying one
    dom, log = dump_dom(exe, out.as_uri() + "#filter=language&problem=gsm-00", tmp_path / "profile")
    assert 'data-problem-id="gsm-00"' in dom and "Uncaught" not in log
    assert "dropped by language: foreign sentence (zh" in dom
    assert "dropped by math" not in dom  # the wrong sample of gsm-00 is hidden by the filter
    # the trace's HTML is shown as text: escaped in the DOM, never run
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;&lt;img src=x onerror=" in dom
    assert "<title>curate report" in dom and "pwned" not in dom.split("<title>", 1)[1].split("</title>", 1)[0]
    assert "data-pwned" not in dom and "<img src=\"x\"" not in dom

    # search: one problem has Russian in a trace
    dom, _ = dump_dom(exe, out.as_uri() + "#q=Теперь", tmp_path / "profile")
    assert "problem 1 of 1" in dom and 'data-problem-id="gsm-06"' in dom


def test_a_generate_run_gets_language_shares_from_language_id(runs, tmp_path):
    gen, _ = runs
    out = write_report(gen, tmp_path / "gen.html", language_sample=10, progress=False)
    text = out.read_text()
    assert "a generate run has no funnel" in text and "a generate run has no correctness verdicts" in text
    assert "a seeded sample of 10 of 22 rows" in text and "<td>en</td>" in text
    assert 'id="browser-data"' in text and "generated" in text


def test_select_and_mix_outputs(mixture_dir, tmp_path):
    """The other stages' real outputs (the shared session fixture): a select dir with its
    problems.parquet, and a mix dir with `messages` rows."""
    select_page = write_report(mixture_dir.parent / "select", tmp_path / "select.html", progress=False).read_text()
    # the fixture's chain has no correctness filter, so select recorded no pass rates
    assert "no problem has a pass rate (the chain had no math or code filter)" in select_page
    assert "a select output: rows after selection" in select_page
    mix_page = write_report(mixture_dir, tmp_path / "mix.html", language_sample=50, progress=False).read_text()
    assert "a mix output: rows after selection" in mix_page and "no correctness verdicts" in mix_page
    data = json.loads(mix_page.split('id="browser-data">', 1)[1].split("</script>", 1)[0])
    assert data and all(p["problem"] and p["kept"] and not p["rejected"] for p in data)


def test_bad_inputs_are_one_line_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    running = tmp_path / "running"
    (running / "kept").mkdir(parents=True)
    (running / "manifest.json").write_text('{"stage": "filter", "status": "running"}')
    trained = tmp_path / "trained"
    (trained / "data").mkdir(parents=True)
    (trained / "manifest.json").write_text('{"stage": "sft"}')
    for target, message in ((tmp_path / "empty", "not a curate run"), (tmp_path / "missing", "no such folder"),
                            (trained, "holds a `sft` run; curate report reads filter, generate, select or mix"),
                            (running, "the filter run is running; finish it first")):
        r = curate("report", target, check=False)
        assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (target / "report.html").exists()


def test_out_into_a_missing_folder_is_refused_before_work(runs, tmp_path):
    _, filtered = runs
    r = curate("report", filtered, "--out", tmp_path / "nope" / "r.html", check=False)
    assert r.returncode == 2 and "does not exist" in r.stderr and not (tmp_path / "nope").exists()


@pytest.fixture(scope="module")
def recipe_folder(mixture_dir, tiny_model, tmp_path_factory) -> Path:
    """A recipe's folder of real stage runs: the shared fixture's generate → filter
    (dedup, decontam) → select → mix (linked in), a second filter (math) → select with
    pass rates over the same generations, a real 2-step SFT of the tiny model on the
    mixture, and an eval of the trained student (2 problems × 2 samples)."""
    src, root = mixture_dir.parent, tmp_path_factory.mktemp("recipe")
    for name in ("generate", "filter", "select", "mix"):
        (root / name).symlink_to(src / name)
    curate("filter", "--input", root / "generate", "--out", root / "filter-math", "--filters", "math", "--no-progress")
    curate("select", "--input", root / "filter-math", "--out", root / "select-math", "--no-progress")
    curate("train", "sft", "--student", tiny_model, "--data", root / "mix", "--out", root / "sft", "--max-steps", 2,
           "--batch-size", 4, "--save-steps", 2, "--logging-steps", 1, "--lr", "1e-3", "--no-progress")
    curate("eval", "--model", root / "sft", "--backend", "transformers", "--benchmarks", src / "problems.jsonl",
           "-k", 2, "--limit", 2, "--max-tokens", 8, "--out", root / "eval", "--no-progress")
    return root


def _manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def test_one_page_across_a_recipes_stages_in_headless_chromium(recipe_folder, tmp_path):
    from curate.report import find_stages

    stages = {s.name: s for s in find_stages(recipe_folder)}
    assert [s.kind for s in stages.values()] == ["generate", "filter", "filter", "select", "select", "mix", "sft",
                                                  "eval"]
    # the lineage comes from the manifests' inputs
    assert stages["filter-math"].inputs == ["generate"] and stages["select-math"].inputs == ["filter-math"]
    assert stages["mix"].inputs == ["select"] and stages["sft"].inputs == ["mix"] and stages["eval"].inputs == ["sft"]

    r = curate("report", recipe_folder, "--no-progress")
    out = recipe_folder / "report.html"
    assert f"report: {out}" in r.stdout
    text = out.read_text()
    page = Page(text)
    assert "script" not in page.tags and "link" not in page.tags
    assert all(url.startswith(("data:image/png;base64,", "#")) for _, url in page.urls), page.urls

    dom, log = dump_dom(chromium(), out.as_uri(), tmp_path / "profile")
    page = Page(dom)
    assert {"stages", "problems", "samples", "filters", "selection", "mixture", "training", "eval"} <= page.ids
    assert "Uncaught" not in log
    # samples: the generate manifest's counts
    gen = _manifest(recipe_folder / "generate")
    assert f'<td class="n samples-done">{gen["counts"]["samples_done"]:,}</td>' in dom
    assert f'<td class="n completion-tokens">{gen["counts"]["completion_tokens"]:,}</td>' in dom
    for reason, n in gen["counts"]["finish_reasons"].items():
        assert f'data-reason="{reason}">{reason}: {n:,}</span>' in dom
    assert f'{gen["counts"]["problems"]:,} problems from' in dom
    # each filter: its funnel's drops per step
    for name in ("filter", "filter-math"):
        for step in _manifest(recipe_folder / name)["funnel"]["steps"]:
            assert f'data-filter="{step["filter"]}"><td>{step["filter"]}</td><td class="n">{step["rows_in"]:,}</td>' \
                   f'<td class="n dropped">{step["dropped"]:,}</td>' in dom
    assert "math: 16 dropped examples" not in dom and "dropped example" in dom  # examples, at most 3 per filter
    # selection: counts and the pass-rate histogram (the random model's answers are all wrong: rate 0)
    sel = _manifest(recipe_folder / "select-math")["counts"]
    assert f'data-count="problems">{sel["problems"]:,}</td>' in dom and 'alt="pass rate histogram"' in dom
    assert "No pass rates: the filter chain had no correctness filter" in dom  # the dedup/decontam select
    # mixture: delivered per source
    for s in _manifest(recipe_folder / "mix")["sources"]:
        assert f'data-source="{s["name"]}"><td>{s["name"]}</td>' in dom
        assert f'<td class="n delivered">{s["delivered"]:,}' in dom
    # training: the SFT loss curve from the checkpoint's trainer_state.json, the last loss as logged
    state = json.loads((recipe_folder / "sft" / "checkpoint-2" / "trainer_state.json").read_text())
    losses = [h["loss"] for h in state["log_history"] if "loss" in h]
    assert len(losses) == 2 and f'data-metric="loss">{losses[-1]:,.4f}</td>' in dom
    assert 'alt="training curves"' in dom and "2 steps" in dom
    # eval: pass@1 and its standard error
    res = _manifest(recipe_folder / "eval")["results"]["problems"]
    assert f'<td class="n pass1">{res["pass@1"]:,.3f}</td><td class="n stderr">{res["pass@1_stderr"]:,.3f}</td>' in dom
    assert 'alt="pass@1 with error bars"' in dom
