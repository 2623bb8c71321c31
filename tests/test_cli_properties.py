"""Property test over the CLI: any value of any option gives a correct result or one clear line, never a traceback.

Hypothesis draws one to three ``mine`` options at a time, with values from the legal range, the edges and far
outside them (negative, zero, huge, NaN, infinity, junk strings). Options that would load a model (dense
retrieval, cross-encoders, query clusters) or start Ray are left out to keep the test fast; their values are
checked by the same code paths (stage ``__post_init__`` and ``MineOptions.validate``) that the matrix in
``test_hostile.py`` exercises one by one.
"""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hnmine.cli import app
from tests.test_reliability import make_inputs

runner = CliRunner()

INT_OPTIONS = ["--num-negatives", "--range-min", "--range-max", "--top-k", "--chunk-size", "--seed", "--batch-size",
               "--ivf-nlist", "--ivf-nprobe", "--hnsw-m", "--hnsw-ef-search", "--positives-per-query",
               "--ce-batch-size", "--ce-max-length"]
FLOAT_OPTIONS = ["--bm25-k1", "--bm25-b", "--rrf-k", "--simans-a", "--simans-b", "--triplet-margin", "--tier-hard",
                 "--tier-medium", "--max-score", "--margin", "--max-ratio", "--hide-fraction", "--max-z",
                 "--spread-margin"]
CHOICE_OPTIONS = {
    "--sampling": ["top", "random", "simans"], "--tiers": ["none", "rank", "gap"], "--fill": ["none", "random"],
    "--format": ["triplet", "n-tuple", "labeled-pair", "flagembedding"],
    "--triplet-type": ["hard", "semihard", "easy", "all"], "--zone": ["0.3:0.05", "1:1", "0.1:-0.05"],
    "--bm25-backend": ["sparse", "rank-bm25"], "--index": ["flat", "ivf", "hnsw"],
    "--dtype": ["auto", "float32", "bfloat16"], "--device": ["cpu", "cpu,cpu"],
}
JUNK = st.sampled_from(["", " ", "nan", "-1", "0", "x" * 300, "é", "cuda", "top,random", "1:2:3", ":", "None"])

ints = st.one_of(st.integers(-3, 60), st.sampled_from([-(2**63), 2**31, 2**40, 10**30]))
floats = st.one_of(st.floats(-2, 2), st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1e308]))


def option_value() -> st.SearchStrategy[tuple[str, str]]:
    def fmt(value: float) -> str:
        return repr(value) if not math.isnan(value) else "nan"

    return st.one_of(
        st.tuples(st.sampled_from(INT_OPTIONS), ints.map(str)),
        st.tuples(st.sampled_from(FLOAT_OPTIONS), floats.map(fmt)),
        st.sampled_from(sorted(CHOICE_OPTIONS)).flatmap(
            lambda name: st.tuples(st.just(name), st.one_of(st.sampled_from(CHOICE_OPTIONS[name]), JUNK))),
        st.tuples(st.sampled_from(INT_OPTIONS + FLOAT_OPTIONS), JUNK),
    )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(options=st.lists(option_value(), min_size=1, max_size=3, unique_by=lambda o: o[0]))
def test_any_option_value_gives_a_result_or_one_line(tmp_path_factory, options):
    folder = tmp_path_factory.mktemp("prop")
    q, c, r = make_inputs(folder / "in", positives={"q1": ["d0", "d4"], "q2": ["d1"], "q3": ["d2"]})
    out = folder / "t.parquet"
    args = ["mine", "--queries", str(q), "--corpus", str(c), "--qrels", str(r), "--retriever", "bm25",
            "--output", str(out), "--quiet"]
    for name, value in options:
        args += [f"{name}={value}"]
    result = runner.invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), (options, repr(result.exception))
    assert "Traceback" not in result.output, options
    if result.exit_code == 0:
        assert out.exists() and Path(f"{out}.manifest.json").exists(), options
        if dict(options).get("--format", "triplet") != "flagembedding":
            pq.read_table(out)
    elif "Invalid value" in result.output:  # click refused the value's type itself (an integer option given "x")
        assert result.exit_code == 2, (options, result.output)
    else:
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert result.exit_code == 2 and len(errors) == 1, (options, result.output)
        assert not out.exists(), options
        assert not [p.name for p in folder.glob(".t.parquet*")], options
