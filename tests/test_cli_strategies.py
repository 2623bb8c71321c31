"""Issue-7 recipes through the CLI on sample_data/: tiers, triplet margins, clusters, positives cap, fill, diff."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow.parquet as pq
import pytest

from hnmine.cli import app
from tests.test_cli import mine, runner


def test_tier_column_by_rank_and_split_files(sample_dir, tmp_path):
    out = tmp_path / "t.parquet"
    mine(sample_dir, out, "--retriever", "bm25", "--range-min", "0", "--num-negatives", "8", "--sampling", "random",
         "--tier-hard", "3", "--tier-medium", "6", "--split-tiers")
    t = pq.read_table(out).to_pydict()
    for rank, tier in zip(t["negative_rank"], t["tier"]):
        assert tier == ("hard" if rank <= 3 else "medium" if rank <= 6 else "easy")
    counts = Counter(t["tier"])
    for tier in ("hard", "medium", "easy"):
        part = pq.read_table(tmp_path / f"t.{tier}.parquet")
        assert part.num_rows == counts[tier] and set(part.column("tier").to_pylist()) <= {tier}


def test_split_command_on_existing_file(sample_dir, tmp_path):
    out = tmp_path / "t.parquet"
    mine(sample_dir, out, "--retriever", "bm25")
    result = runner.invoke(app, ["split", str(out)])
    assert result.exit_code == 0, result.output
    assert sum(pq.read_table(tmp_path / f"t.{x}.parquet").num_rows for x in ("hard", "medium", "easy")) == \
        pq.read_table(out).num_rows


@pytest.mark.parametrize("kind", ["hard", "semihard", "easy", "all"])
def test_triplet_margin_regions_on_cosine(sample_dir, tmp_path, kind):
    out = tmp_path / "t.parquet"
    mine(sample_dir, out, "--retriever", "dense", "--range-min", "0", "--triplet-type", kind, "--triplet-margin", "0.1")
    t = pq.read_table(out).to_pydict()
    lowest: dict[str, float] = {}
    for q, p in zip(t["query_id"], t["positive_score"]):
        lowest[q] = min(lowest.get(q, p), p)
    for q, s in zip(t["query_id"], t["negative_score"]):
        d = lowest[q] - s
        assert {"hard": d <= 1e-6, "semihard": -1e-6 < d <= 0.1 + 1e-6, "easy": d > 0.1 - 1e-6,
                "all": d <= 0.1 + 1e-6}[kind], (kind, d)


def test_positives_per_query_caps_row_multiplication(sample_dir, tmp_path):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    mine(sample_dir, a, "--retriever", "bm25")
    mine(sample_dir, b, "--retriever", "bm25", "--positives-per-query", "1")
    ta, tb = pq.read_table(a).to_pydict(), pq.read_table(b).to_pydict()
    per_query_positives = Counter(q for q, _ in set(zip(tb["query_id"], tb["positive_id"])))
    assert max(per_query_positives.values()) == 1
    assert len(tb["query"]) < len(ta["query"])
    # The cap changes rows, not which negatives were mined.
    assert set(zip(ta["query_id"], ta["negative_id"])) == set(zip(tb["query_id"], tb["negative_id"]))


def test_fill_random_is_flagged_and_short_queries_still_reported(sample_dir, tmp_path):
    out = tmp_path / "t.parquet"
    # A window of 3 candidates cannot give 3 negatives after a tight margin: queries go short.
    mine(sample_dir, out, "--retriever", "dense", "--range-min", "0", "--range-max", "3", "--num-negatives", "3",
         "--max-score", "0.6", "--fill", "random")
    t = pq.read_table(out).to_pydict()
    manifest = json.loads((tmp_path / "t.parquet.manifest.json").read_text())["counts"]
    filled = [f for f in t["filled"] if f]
    assert filled and manifest["negatives_filled_at_random"] > 0
    assert manifest["queries_short_of_negatives"]  # filling does not hide them
    assert all(r == "random" for r, f in zip(t["retriever"], t["filled"]) if f)
    qrels = pq.read_table(sample_dir / "qrels.parquet").to_pydict()
    assert not set(zip(qrels["query_id"], qrels["doc_id"])) & set(zip(t["query_id"], t["negative_id"]))


def test_query_clusters_column(sample_dir, tmp_path):
    out = tmp_path / "t.parquet"
    mine(sample_dir, out, "--retriever", "bm25", "--query-clusters", "4")
    t = pq.read_table(out).to_pydict()
    per_query = {}
    for q, c in zip(t["query_id"], t["cluster_id"]):
        assert per_query.setdefault(q, c) == c
    assert set(per_query.values()) <= {0, 1, 2, 3} and len(set(per_query.values())) > 1


def test_diff_reports_changed_negatives(sample_dir, tmp_path):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    mine(sample_dir, a, "--retriever", "bm25")
    mine(sample_dir, b, "--retriever", "dense")
    result = runner.invoke(app, ["diff", str(a), str(b), "--json", str(tmp_path / "d.json")])
    assert result.exit_code == 0, result.output
    d = json.loads((tmp_path / "d.json").read_text())
    assert d["queries_compared"] == 119 and 0 < d["changed_fraction"] < 1
    assert d["negatives_kept"] + d["negatives_removed"] == d["negatives_old"]
    same = runner.invoke(app, ["diff", str(a), str(a), "--json", str(tmp_path / "s.json")])
    assert same.exit_code == 0 and json.loads((tmp_path / "s.json").read_text())["changed_fraction"] == 0


def test_hide_fraction_counts_hidden_positives_through_the_stages(sample_dir, tmp_path, tiny_cross_encoder):
    from hnmine.io.inputs import load_qrels_inputs
    from hnmine.stages.hidden_positives import hide_positives

    data = load_qrels_inputs(sample_dir / "queries.parquet", sample_dir / "corpus.parquet",
                             sample_dir / "qrels.parquet")
    reduced, hidden = hide_positives(data, 0.5, seed=0)
    assert hidden and all(len(reduced.positives_of(q)) >= 1 for q in range(reduced.num_queries))
    assert int(reduced.positive_counts.sum()) == int(data.positive_counts.sum()) - len(hidden)

    out = tmp_path / "t.parquet"
    mine(sample_dir, out, "--retriever", "bm25", "--range-min", "0", "--hide-fraction", "0.5",
         "--cross-encoder", tiny_cross_encoder, "--margin", "0.0")
    notes = json.loads((tmp_path / "t.parquet.manifest.json").read_text())["counts"]["notes"]
    probes = [v for k, v in notes.items() if k.startswith("hidden positives present")]
    assert probes[0] > 0  # BM25 retrieves hidden positives: they are in the corpus like any document
    assert probes == sorted(probes, reverse=True)  # filters only ever remove
    t = pq.read_table(out).to_pydict()
    ids = {(data.query_ids[q], data.doc_ids[d]) for q, d in hidden}
    assert len(ids & set(zip(t["query_id"], t["negative_id"]))) == probes[-1]


def test_train_denoiser_saves_a_cross_encoder_that_denoise_loads(sample_dir, tmp_path, tiny_cross_encoder):
    model_dir = tmp_path / "denoiser"
    result = runner.invoke(app, ["train-denoiser", "--queries", str(sample_dir / "queries.parquet"),
                                 "--corpus", str(sample_dir / "corpus.parquet"), "--qrels",
                                 str(sample_dir / "qrels.parquet"), "--output", str(model_dir),
                                 "--base-model", tiny_cross_encoder, "--max-queries", "16", "--max-length", "64"])
    assert result.exit_code == 0, result.output
    config = json.loads((model_dir / "config.json").read_text())
    assert any("SequenceClassification" in a for a in config["architectures"])
    assert not list(tmp_path.glob(".denoiser.*"))
    mined = tmp_path / "m.parquet"
    mine(sample_dir, mined, "--retriever", "bm25", "--cross-encoder", str(model_dir), "--max-score", "0.99")
    assert "negative_ce_score" in pq.read_table(mined).column_names
    again = runner.invoke(app, ["train-denoiser", "--pairs", str(sample_dir / "pairs.parquet"),
                                "--output", str(model_dir)])
    assert again.exit_code == 2 and "already exists" in again.output
