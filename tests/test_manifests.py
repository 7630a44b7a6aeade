"""Every stage records itself the same way: manifest.json with `stage`, `status` and a
`counts` dict, written through curate.store. The stages run here for real (generate
against a scripted OpenAI-compatible server on 127.0.0.1)."""

import json

from curate.store import locked
from helpers import curate
from servers import Reply, ScriptedServer, chat_response


def manifest(path):
    return json.loads((path / "manifest.json").read_text())


def test_every_stage_manifest_has_stage_status_and_counts(problems_file, tmp_path):
    gen, kept, sel, mix = (tmp_path / n for n in ("generate", "filter", "select", "mix"))

    def respond(call):
        return Reply(body=chat_response(["<think>add them</think> The answer is \\boxed{18}."] * call.body["n"]))

    with ScriptedServer(respond) as server:
        curate("generate", "--input", problems_file, "--out", gen, "--backend", "openai", "--model", "m",
               "--base-url", server.base_url, "-n", "2", "--no-progress")
    curate("filter", "--input", gen, "--out", kept, "--filters", "format,length", "--no-progress")
    curate("select", "--input", kept, "--out", sel, "--no-progress")
    curate("mix", "--out", mix, "--source", f"r={sel}:6", "--no-progress")
    curate("card", mix, "--license", "mit")
    for path, stage in ((gen, "generate"), (kept, "filter"), (sel, "select"), (mix, "mix")):
        m = manifest(path)
        assert m["stage"] == stage and m["status"] == "complete", (stage, m.get("status"))
        assert isinstance(m["counts"], dict) and m["counts"], stage
        assert m["config"] and m["versions"]["curate"] and m["created"] and m["updated"]
        assert m["timings"]["seconds"] >= 0
        assert not list(path.glob(".tmp-*")) and not list(tmp_path.glob(".tmp-*"))
    assert manifest(gen)["counts"]["samples_done"] == 16 and manifest(kept)["counts"]["rows_in"] == 16
    assert manifest(sel)["counts"]["selected"] == 16 and manifest(mix)["counts"]["rows"] == 6
    assert manifest(mix)["card"]["license"] == "mit" and "token_lengths.png" in manifest(mix)["card"]["plots"]
    assert manifest(gen)["inputs"]["problems"]["rows"] == 8 and manifest(kept)["inputs"]["kind"] == "generate"
    # card amends the mix folder under its lock: a second writer is refused in one line
    with locked(mix):
        r = curate("card", mix, check=False)
    assert r.returncode == 2 and r.stderr.strip() == f"error: {mix}: another curate process is writing this run"
