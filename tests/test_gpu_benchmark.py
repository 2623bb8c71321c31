"""benchmarks/gpu.py without a GPU: it says so and exits 0 (CI), and its labels say what ran."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def gpu_bench():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("gpu_bench", REPO / "benchmarks" / "gpu.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def test_corpus_labels_never_round_to_zero(gpu_bench):
    assert [gpu_bench.size_label(n) for n in (800, 2500, 100_000, 1_000_000)] == ["800", "2.5k", "100k", "1000k"]


def test_notes_come_from_the_manifest_counts(gpu_bench):
    run = {"manifest": {"counts": {"notes": {"encoder precision": "bfloat16", "exact search": "torch on cuda"}}}}
    assert gpu_bench.run_notes(run)["exact search"] == "torch on cuda"
    assert gpu_bench.run_notes({}) == {}


def test_without_cuda_it_skips_and_says_so(gpu_bench, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the benchmark would run for real")
    assert gpu_bench.main([]) == 0
    assert "no CUDA device here" in capsys.readouterr().out
