"""LabelGraphDenoiser: a teacher fitted on a labelled set drops the candidates its labels say are relevant."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hnmine.cli import app
from hnmine.config import load_pipeline, pipeline_to_toml
from hnmine.errors import InputError
from hnmine.pipeline import Pipeline
from hnmine.recipe import MineOptions, build_pipeline
from hnmine.stages.dense import DenseRetriever
from hnmine.stages.exclusion import PositiveExcluder
from hnmine.stages.label_graph import LABEL_GRAPH_PROBABILITY, LabelGraphDenoiser
from hnmine.stages.window import RankWindow
from tests.conftest import make_data
from tests.test_ray_engine import assert_same_rows
from tests.test_reliability import assert_failed_cleanly

runner = CliRunner()
TOPICS = ("apple", "bridge", "comet", "desert", "engine", "forest")


def write_labelled_set(folder: Path) -> tuple[Path, Path]:
    """Five labelled queries per topic, each marking all ten documents of its topic relevant (BEIR names: a
    queries jsonl with _id/text and a qrels TSV with query-id/corpus-id/score)."""
    folder.mkdir(parents=True, exist_ok=True)
    queries, qrels = [], ["query-id\tcorpus-id\tscore"]
    for t in TOPICS:
        for j in range(5):
            queries.append(json.dumps({"_id": f"L-{t}-{j}", "text": f"question {j} about the {t}"}))
            qrels += [f"L-{t}-{j}\t{t}-{k}\t{2 if k == j else 1}" for k in range(10)]
    (folder / "queries.jsonl").write_text("\n".join(queries) + "\n")
    (folder / "qrels.tsv").write_text("\n".join(qrels) + "\n")
    return folder / "queries.jsonl", folder / "qrels.tsv"


@pytest.mark.parametrize("fit_queries", [5000, 12])
def test_a_candidate_the_labels_co_list_with_the_positive_is_dropped_an_unrelated_one_kept(
        tiny_sentence_transformer, tmp_path, fit_queries):
    """With every labelled query fitting, and with a sample of 12 of the 30 (the rest still vote in the graph)."""
    queries, qrels = write_labelled_set(tmp_path / "labelled")
    docs = {f"{t}-{k}": f"note {k} on {t} number {k * 7 + i}" for i, t in enumerate(TOPICS) for k in range(10)}
    data = make_data({"m": "tell me about the apple"}, docs, {"m": ["apple-0"]})
    dense = DenseRetriever(model=tiny_sentence_transformer, top_k=60)
    teacher = LabelGraphDenoiser(queries=str(queries), qrels=str(qrels), depth=59, dense=dense,
                                 fit_queries=fit_queries)
    pipeline = Pipeline([dense, PositiveExcluder(), RankWindow(0, 60), teacher])
    (batch,) = pipeline.run(data)
    kept = {data.doc_ids[i] for i in batch.candidates.column("doc_idx").to_pylist()}
    # every other apple document is co-listed with the known positive by the apple queries: dropped
    assert not any(d.startswith("apple-") for d in kept)
    # the documents of the other topics are nobody's co-positive of apple-0: kept, all fifty
    assert kept == {d for d in docs if not d.startswith("apple-")}
    probability = batch.candidates.column(LABEL_GRAPH_PROBABILITY).to_numpy()
    assert (probability < 0.25).all()
    notes = teacher.notes()
    assert notes["label-graph teacher: labelled queries"] == 30
    assert notes["label-graph teacher: fitting queries"] == min(30, fit_queries)
    assert notes["label-graph teacher: fitting candidates"] == min(30, fit_queries) * 59


def test_relabel_writes_the_dropped_candidates_at_or_above_its_own_threshold(tiny_sentence_transformer,
                                                                             tmp_path):
    """RLHN with this teacher: every dropped candidate becomes a flagged positive when the relabel threshold is
    the drop threshold; a higher one relabels exactly the dropped candidates at or above it, and drops the rest."""
    queries, qrels = write_labelled_set(tmp_path / "labelled")
    docs = {f"{t}-{k}": f"note {k} on {t} number {k * 7 + i}" for i, t in enumerate(TOPICS) for k in range(10)}
    data = make_data({"m": "tell me about the apple"}, docs, {"m": ["apple-0"]})
    dense = DenseRetriever(model=tiny_sentence_transformer, top_k=60)
    teacher = LabelGraphDenoiser(queries=str(queries), qrels=str(qrels), depth=59, dense=dense, relabel=True,
                                 relabel_probability=0.25)
    (batch,) = Pipeline([dense, PositiveExcluder(), RankWindow(0, 60), teacher]).run(data)
    relabeled = {data.doc_ids[i] for i in batch.relabeled.column("doc_idx").to_pylist()}
    assert relabeled == {f"apple-{k}" for k in range(1, 10)}  # every co-listed apple document, as above
    assert len(batch.candidates) == 50 and not relabeled & {data.doc_ids[i] for i in
                                                            batch.candidates.column("doc_idx").to_pylist()}
    key = "label-graph teacher: likely false negatives written as extra positives (relabeled)"
    assert teacher.notes()[key] == 9

    # Graded probabilities (the fitted trees give these toy documents near 0 or 1): apple-k at k / 10.
    (window,) = Pipeline([dense, PositiveExcluder(), RankWindow(0, 60)]).run(data)
    names = [data.doc_ids[i] for i in window.candidates.column("doc_idx").to_pylist()]
    graded = np.array([int(n[-1]) / 10 if n.startswith("apple-") else 0.0 for n in names])

    class Graded:
        def predict_proba(self, x):
            return np.c_[1 - graded, graded]

    teacher.relabel_probability, teacher._model, teacher._relabeled = 0.5, Graded(), 0
    out = teacher.apply(window)
    assert {data.doc_ids[i] for i in out.relabeled.column("doc_idx").to_pylist()} == \
        {f"apple-{k}" for k in range(5, 10)}
    kept = {data.doc_ids[i] for i in out.candidates.column("doc_idx").to_pylist()}
    assert {"apple-1", "apple-2"} <= kept and not kept & {f"apple-{k}" for k in range(3, 10)}  # 0.3, 0.4: dropped
    assert teacher.notes()[key] == 5


def test_several_known_positives_give_each_candidate_its_highest_probability(tiny_sentence_transformer, tmp_path):
    """A query with two known positives: each candidate's probability is the higher of the two it gets with
    either positive alone (same candidates, same fitted teacher); a query with one is judged as before, and a
    query without one is not judged (NaN) and keeps its candidates."""
    queries, qrels = write_labelled_set(tmp_path / "labelled")
    docs = {f"{t}-{k}": f"note {k} on {t} number {k * 7 + i}" for i, t in enumerate(TOPICS) for k in range(10)}
    data = make_data({"m": "apples and bridges", "n": "tell me about the comet", "o": "and the desert"}, docs,
                     {"m": ["apple-0", "bridge-0"], "n": ["comet-0"]})
    dense = DenseRetriever(model=tiny_sentence_transformer, top_k=60)
    teacher = LabelGraphDenoiser(queries=str(queries), qrels=str(qrels), depth=59, dense=dense,
                                 max_probability=1.0)
    (window,) = Pipeline([dense, PositiveExcluder(), RankWindow(0, 60)]).run(data)
    positives = window.positives

    def probability(keep_doc: str | None) -> np.ndarray:
        kept = positives if keep_doc is None else positives.filter(pc.invert(pc.equal(
            positives.column("doc_idx"), data.doc_ids.index(keep_doc))))
        out = teacher.apply(window.with_positives(kept))
        assert out.num_candidates == window.num_candidates  # max_probability 1.0: nothing dropped
        return out.candidates.column(LABEL_GRAPH_PROBABILITY).to_numpy(zero_copy_only=False)

    both, apple_only, bridge_only = probability(None), probability("bridge-0"), probability("apple-0")
    q = window.candidates.column("query_idx").to_numpy()
    m, n, o = q == 0, q == 1, q == 2
    np.testing.assert_array_equal(both[m], np.fmax(apple_only[m], bridge_only[m]))
    assert (apple_only[m] != bridge_only[m]).any()  # the two positives do judge differently
    np.testing.assert_array_equal(both[n], apple_only[n])
    assert np.isnan(both[o]).all() and not np.isnan(both[m | n]).any()


def test_a_labelled_query_with_a_mined_querys_id_never_judges_it(tiny_sentence_transformer, tmp_path):
    queries, qrels = write_labelled_set(tmp_path / "labelled")
    docs = {f"{t}-{k}": f"note {k} on {t}" for t in TOPICS for k in range(10)}
    data = make_data({"L-apple-0": "question 0 about the apple"}, docs, {"L-apple-0": ["apple-0"]})
    teacher = LabelGraphDenoiser(queries=str(queries), qrels=str(qrels),
                                 dense=DenseRetriever(model=tiny_sentence_transformer))
    teacher.check_data(data)
    assert teacher._labelled is not None and teacher._labelled.num_queries == 29
    assert "L-apple-0" not in teacher._labelled.query_ids and teacher._labelled.excluded == 1


def test_options_and_files_are_checked(tmp_path):
    queries, qrels = write_labelled_set(tmp_path)
    for kwargs, message in (({"max_probability": 0.0}, "--label-graph-max-probability"),
                            ({"max_probability": 1.5}, "--label-graph-max-probability"),
                            ({"queries": None}, "needs a labelled set"),
                            ({"qrels": str(tmp_path / "nope.tsv")}, "--label-graph-qrels"),
                            ({"folds": 1}, "--label-graph-folds")):
        with pytest.raises(InputError, match=message):
            LabelGraphDenoiser(**{"queries": str(queries), "qrels": str(qrels), **kwargs})


def test_unknown_doc_id_names_the_file_and_row(tmp_path):
    queries, qrels = write_labelled_set(tmp_path)
    data = make_data({"m": "x"}, {f"{t}-{k}": t for t in TOPICS for k in range(9)}, {"m": ["apple-0"]})
    with pytest.raises(InputError, match=r"qrels.tsv: row 9 .*doc_id 'apple-9', which is not in the corpus"):
        LabelGraphDenoiser(queries=str(queries), qrels=str(qrels)).check_data(data)


def test_recipe_places_it_after_the_window_shares_the_retriever_and_round_trips(tmp_path):
    queries, qrels = write_labelled_set(tmp_path)
    opts = MineOptions(label_graph_queries=str(queries), label_graph_qrels=str(qrels), seed=7)
    pipeline = build_pipeline(opts)
    kinds = [s.kind for s in pipeline.stages]
    assert kinds.index("label_graph") == kinds.index("rank_window") + 1
    teacher = pipeline.stages[kinds.index("label_graph")]
    assert teacher.dense is pipeline.stages[0] and teacher.seed == 7 and teacher.max_probability == 0.25
    (tmp_path / "p.toml").write_text(pipeline_to_toml(pipeline))
    again = load_pipeline(tmp_path / "p.toml")
    assert [s.kind for s in again.stages] == kinds
    assert again.stages[kinds.index("label_graph")].qrels == str(qrels)
    with pytest.raises(InputError, match="give --label-graph-queries too"):
        MineOptions(label_graph_qrels=str(qrels)).validate()
    with pytest.raises(InputError, match="--retriever bm25"):
        MineOptions(label_graph_queries=str(queries), label_graph_qrels=str(qrels), retriever="bm25").validate()


# -- the CLI end to end on sample_data ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def split_sample(tmp_path_factory, sample_dir: Path) -> dict[str, Path]:
    """sample_data split in two: half the queries are mined, the other half (and every query with several
    positives) are the labelled set, written as CSV to go through another reader."""
    folder = tmp_path_factory.mktemp("split-sample")
    queries, qrels = pq.read_table(sample_dir / "queries.parquet"), pq.read_table(sample_dir / "qrels.parquet")
    ids = queries.column("query_id").to_pylist()
    counts = qrels.group_by("query_id").aggregate([("doc_id", "count")])
    multi = [q for q, n in zip(counts.column("query_id").to_pylist(), counts.column("doc_id_count").to_pylist())
             if n > 1]
    labelled = pa.array(sorted(set(ids[::2]) | set(multi)))
    is_labelled = pc.is_in(queries.column("query_id"), labelled)
    qrels_labelled = pc.is_in(qrels.column("query_id"), labelled)
    out = {name: folder / name for name in ("mine_q.parquet", "mine_r.parquet", "lab_q.csv", "lab_r.csv")}
    pq.write_table(queries.filter(pc.invert(is_labelled)), out["mine_q.parquet"])
    pq.write_table(qrels.filter(pc.invert(qrels_labelled)), out["mine_r.parquet"])
    import pyarrow.csv as pcsv

    pcsv.write_csv(queries.filter(is_labelled), out["lab_q.csv"])
    pcsv.write_csv(qrels.filter(qrels_labelled), out["lab_r.csv"])
    return out


def mine(split: dict[str, Path], sample_dir: Path, out: Path, *extra: str):
    return runner.invoke(app, [
        "mine", "--queries", str(split["mine_q.parquet"]), "--qrels", str(split["mine_r.parquet"]),
        "--corpus", str(sample_dir / "corpus.parquet"), "--range-min", "0", "--range-max", "30", "--quiet",
        "--output", str(out), *extra])


def labelled(split: dict[str, Path], queries: Path | None = None, qrels: Path | None = None) -> list[str]:
    return ["--label-graph-queries", str(queries or split["lab_q.csv"]),
            "--label-graph-qrels", str(qrels or split["lab_r.csv"])]


def test_cli_end_to_end_is_deterministic_and_records_the_probability(split_sample, sample_dir, tmp_path):
    outs = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    for out in outs:
        result = mine(split_sample, sample_dir, out, *labelled(split_sample), "--seed", "3")
        assert result.exit_code == 0, result.output
    assert outs[0].read_bytes() == outs[1].read_bytes()  # same seed, same bytes
    table = pq.read_table(outs[0])
    probability = table.column(f"negative_{LABEL_GRAPH_PROBABILITY}").to_numpy()
    assert table.num_rows > 0 and (probability < 0.25).all() and (probability >= 0).all()
    notes = json.loads(outs[0].with_name("a.parquet.manifest.json").read_text())["counts"]["notes"]
    import pyarrow.csv as pcsv

    labelled_ids = set(pcsv.read_csv(split_sample["lab_r.csv"]).column("query_id").to_pylist())
    assert notes["label-graph teacher: labelled queries"] == len(labelled_ids)
    # the labelled set is an input like the others: listed and hashed in the manifest
    inputs = json.loads(outs[0].with_name("a.parquet.manifest.json").read_text())["inputs"]
    entry = inputs["label_graph_qrels"]
    assert entry["path"] == str(split_sample["lab_r.csv"]) and len(entry["sha256"]) == 64


def test_cli_relabel_flags_the_teachers_surest_drops_as_positives(split_sample, sample_dir, tmp_path):
    """--relabel-false-negatives needs no false-negative rule when the label-graph teacher runs."""
    out = tmp_path / "o.parquet"
    result = mine(split_sample, sample_dir, out, *labelled(split_sample), "--seed", "3", "--relabel-false-negatives",
                  "--label-graph-relabel-probability", "0.25")
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out).to_pydict()
    relabeled = {(q, p) for q, p, f in zip(rows["query_id"], rows["positive_id"], rows["positive_relabeled"]) if f}
    mined = pq.read_table(split_sample["mine_r.parquet"]).to_pydict()
    known = set(zip(mined["query_id"], mined["doc_id"]))
    assert relabeled and not relabeled & known and not relabeled & set(zip(rows["query_id"], rows["negative_id"]))
    notes = json.loads(out.with_name("o.parquet.manifest.json").read_text())["counts"]["notes"]
    assert notes["label-graph teacher: likely false negatives written as extra positives (relabeled)"] >= \
        len(relabeled)


@pytest.fixture(scope="module")
def local_output(split_sample, sample_dir, tmp_path_factory) -> Path:
    """The local run the Ray runs are compared with."""
    out = tmp_path_factory.mktemp("label-graph-local") / "local.parquet"
    result = mine(split_sample, sample_dir, out, *labelled(split_sample), "--seed", "3", "--dtype", "float32")
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
# "driver" passes too (about two minutes more of the suite): there, the one step that differs is the search of the
# labelled queries, by the same RayEngine.search that serves the mined queries in tests/test_ray_engine.py.
@pytest.mark.parametrize("corpus", ["workers"])
def test_ray_engine_equals_local(ray_local, split_sample, sample_dir, local_output, tmp_path, monkeypatch, corpus):
    """The Ray engine encodes the labelled queries and searches them for the teacher's fit; the teacher, its
    probabilities and the kept negatives are the local run's (floats to 1e-5: shards). With the corpus on the
    driver the engine searches the driver's corpus embeddings; with ``--ray-corpus workers`` the corpus shards
    answer the labelled queries with their own indexes, and nothing searches a driver copy of the corpus (the
    engine's driver-side search fails here if it is reached)."""
    from hnmine.engines.ray import RayEngine

    if corpus == "workers":
        def no_driver_search(*args, **kwargs):
            raise AssertionError("searched a driver copy of the corpus")

        monkeypatch.setattr(RayEngine, "search", no_driver_search)
    out = tmp_path / "ray.parquet"
    result = mine(split_sample, sample_dir, out, *labelled(split_sample), "--seed", "3", "--dtype", "float32",
                  "--engine", "ray", "--no-cache", "--ray-workers", "2", "--ray-shards", "3", "--ray-corpus", corpus)
    assert result.exit_code == 0, result.output
    assert_same_rows(pq.read_table(local_output), pq.read_table(out))
    manifest = json.loads(out.with_name("ray.parquet.manifest.json").read_text())
    engine, notes = manifest["engine"], manifest["counts"]["notes"]
    assert engine["kind"] == "ray" and engine["texts encoded on Ray"] > 0
    assert engine.get("corpus_on", "driver") == corpus
    local_notes = json.loads(local_output.with_name("local.parquet.manifest.json").read_text())["counts"]["notes"]
    for key in ("labelled queries", "fitting queries", "fitting candidates", "hidden positives among them"):
        assert notes[f"label-graph teacher: {key}"] == local_notes[f"label-graph teacher: {key}"], key


def test_with_the_corpus_on_the_workers_its_retriever_must_search_the_shards(tmp_path):
    """A pipeline file can give the teacher a dense retriever of its own; with the corpus on the workers the
    shards hold only the searching retriever's embeddings, so that is refused in one line (no Ray needed)."""
    from hnmine.engines.ray import RayEngine

    queries, qrels = write_labelled_set(tmp_path)
    dense = DenseRetriever()
    own = LabelGraphDenoiser(queries=str(queries), qrels=str(qrels), dense=DenseRetriever(model="another"))
    shared = LabelGraphDenoiser(queries=str(queries), qrels=str(qrels), dense=dense)
    with pytest.raises(InputError, match="the label-graph teacher's dense retriever must be the one that searches"):
        RayEngine(corpus="workers").check_pipeline(Pipeline([dense, PositiveExcluder(), RankWindow(0, 30), own]))
    RayEngine(corpus="workers").check_pipeline(Pipeline([dense, PositiveExcluder(), RankWindow(0, 30), shared]))
    RayEngine(corpus="driver").check_pipeline(Pipeline([dense, PositiveExcluder(), RankWindow(0, 30), own]))


@pytest.mark.parametrize(("extra", "message"), [
    (["--label-graph-max-probability", "0"], "--label-graph-max-probability must be > 0.0"),
    (["--label-graph-max-probability", "2"], "--label-graph-max-probability must be <= 1.0"),
    (["--label-graph-relabel-probability", "0"], "--label-graph-relabel-probability must be > 0.0"),
    (["--label-graph-qrels", "MISSING"], "--label-graph-qrels MISSING: not found"),
    (["--label-graph-queries", "MISSING"], "--label-graph-queries MISSING: not found"),
])
def test_bad_options_are_one_line_errors_and_write_nothing(split_sample, sample_dir, tmp_path, extra, message):
    out = tmp_path / "out.parquet"
    args = labelled(split_sample)
    for i in range(0, len(extra), 2):  # a flag given here replaces the labelled set's
        if extra[i] in args:
            args[args.index(extra[i]) + 1] = extra[i + 1]
        else:
            args += extra[i:i + 2]
    assert_failed_cleanly(mine(split_sample, sample_dir, out, *args), out, message)


def test_bad_labelled_sets_fail_before_encoding(split_sample, sample_dir, tmp_path, monkeypatch):
    import hnmine.engines.local

    def no_encoding(*args, **kwargs):
        raise AssertionError("encoded before the labelled set was checked")

    monkeypatch.setattr(hnmine.engines.local.LocalEngine, "encode", no_encoding)
    bad = tmp_path / "bad.csv"
    bad.write_text("query_id,doc_id,score\n" + split_sample["lab_r.csv"].read_text().splitlines()[1] + "\n"
                   + '"x","no-such-doc",1\n')
    queries = tmp_path / "q.csv"
    queries.write_text(split_sample["lab_q.csv"].read_text() + '"x","another question"\n')
    out = tmp_path / "out.parquet"
    assert_failed_cleanly(mine(split_sample, sample_dir, out, *labelled(split_sample, queries, bad)), out,
                          "bad.csv: row 1 (0-based) names doc_id 'no-such-doc', which is not in the corpus")
    # The mined queries' own labels as the labelled set: every labelled query is a mined one, none is left.
    assert_failed_cleanly(mine(split_sample, sample_dir, out, *labelled(
        split_sample, split_sample["mine_q.parquet"], split_sample["mine_r.parquet"])), out,
        "no labelled query with a positive (score > 0) is left to learn from")
    empty = tmp_path / "empty.csv"
    empty.write_text("query_id,doc_id,score\n")
    assert_failed_cleanly(mine(split_sample, sample_dir, out, *labelled(split_sample, qrels=empty)), out,
                          "empty.csv")
