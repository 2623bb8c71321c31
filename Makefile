# hnmine: every target installs what it needs first, so each works on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= out
SHARED ?= ../shared/datasets/scifact

.PHONY: install mine test lint bench bench-deps bench-bm25 bench-dtype bench-scale bench-vs-st bench-quality bench-false-negatives bench-ray bench-gpu sample-data refresh clean

install: $(VENV)/.installed

# The main job installs only what it runs (hnmine and its dependencies); tests, lint and the rest add the dev extra.
$(VENV)/.core: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.installed: $(VENV)/.core
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

mine: $(VENV)/.core
	mkdir -p $(OUT)
	$(BIN)/hnmine mine --queries sample_data/queries.parquet --corpus sample_data/corpus.parquet \
		--qrels sample_data/qrels.parquet --output $(OUT)/sample_triplets.parquet --overwrite

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check hnmine tests benchmarks scripts

# Speed and memory (issue #3), each printing ratios against the peer measured in the same run. `bench` runs all
# four (about an hour on 2 CPU cores); the parts run alone too.
bench: bench-bm25 bench-dtype bench-scale bench-vs-st

bench-deps: install
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[bench]'

bench-bm25: install
	$(BIN)/python benchmarks/bm25.py

bench-dtype: install
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/dtype.py --scifact $(SHARED) --json benchmarks/results/dtype.json

bench-scale: bench-deps
	$(BIN)/python benchmarks/scale.py --scifact $(SHARED) --out-dir benchmarks/results

bench-vs-st: bench-deps
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/vs_sentence_transformers.py --scifact $(SHARED) --repeats 3 \
		--json benchmarks/results/vs_sentence_transformers.json

# hnmine vs sentence-transformers' mine_hard_negatives on one GPU (SciFact and a 100k-passage corpus built from
# it; cold and warm, bf16 and float32). Under 8 minutes on one modern GPU; without CUDA it says so and skips.
bench-gpu: bench-deps
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/gpu.py --scifact $(SHARED) --json benchmarks/results/gpu.json

# Downstream quality (issue #4): mine SciFact train per strategy, fine-tune MiniLM, nDCG@10/Recall@100 on test.
# Resumable: rerun to continue; results in benchmarks/results/downstream.{json,md}. Takes hours on 2 CPU cores.
QUALITY_OUT ?= /tmp/hnmine-downstream
bench-quality: install
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[bench]'
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/downstream.py --scifact $(SHARED) --out-dir $(QUALITY_OUT)

# False negatives vs hardness (issue #14): one point per recipe on NFCorpus dev (one known positive per query)
# and SciFact train (hide-fraction probe); sentence-transformers' miner is run for real and its output kept in
# FN_WORK. Results: benchmarks/results/false_negatives.{json,md,png}. About 30 minutes on 2 CPU cores.
FN_WORK ?= /tmp/hnmine-false-negatives
bench-false-negatives: bench-deps
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/false_negatives.py --nfcorpus ../shared/datasets/nfcorpus \
		--scifact $(SHARED) --work-dir $(FN_WORK)

# Ray engine: corpus encoding + sharded search with 1 vs 2 Ray workers (actors) on this machine.
bench-ray: install
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/ray_workers.py --beir $(SHARED)

sample-data: install
	$(BIN)/python scripts/make_sample_data.py $(SHARED) sample_data

# ANCE-style refresh: mine with a newer checkpoint, then report how the negatives moved.
CHECKPOINT ?= all-MiniLM-L6-v2
PREV ?= $(OUT)/sample_triplets.parquet
NEXT ?= $(OUT)/sample_triplets.next.parquet
refresh: $(VENV)/.core
	$(BIN)/hnmine mine --queries sample_data/queries.parquet --corpus sample_data/corpus.parquet \
		--qrels sample_data/qrels.parquet --model $(CHECKPOINT) --output $(NEXT) --overwrite
	$(BIN)/hnmine diff $(PREV) $(NEXT)

clean:
	rm -rf $(OUT) .pytest_cache .ruff_cache
