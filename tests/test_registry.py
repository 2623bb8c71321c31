"""One registry filled by the stage classes themselves; each option declared once, with its range, on its stage."""

from __future__ import annotations

import dataclasses
import io
import sys
from typing import Any

import pytest
from rich.console import Console

import hnmine.stages
from hnmine.candidates import CandidateBatch
from hnmine.config import check_composition, load_pipeline, pipeline_to_toml
from hnmine.data import MiningData
from hnmine.errors import InputError
from hnmine.io.manifest import print_summary
from hnmine.io.writers import labeled_pair_table, triplet_table
from hnmine.pipeline import Pipeline
from hnmine.stage import Check, Phase, Stage, score_columns, stage_kinds
from hnmine.stages.bm25 import BM25Retriever
from hnmine.stages.exclusion import PositiveExcluder
from hnmine.stages.selection import NegativeSelector

KNOWN = {"bm25", "dense", "hybrid", "exclude_positives", "rank_window", "cross_encoder_score", "cross_encoder_denoise",
         "bi_encoder_denoise", "false_negative_filter", "ambiguous_zone", "select", "triplet_margin", "tiers",
         "fill_random", "positives_per_query", "query_clusters", "sibling_filter", "synthetic_negatives"}

# A whole stage in one file: a filter that adds its own score column and drops candidates below a threshold.
TOY_STAGE = '''
from dataclasses import dataclass
from typing import ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from hnmine.candidates import set_column
from hnmine.stage import Phase, Stage, option


@dataclass
class DocLengthFilter(Stage):
    """Keeps candidates whose passage has at least ``min_words`` words; adds ``doc_words`` as a score."""

    kind: ClassVar[str] = "doc_length_filter"
    summary_label: ClassVar[str] = "shorter than min_words"
    phase: ClassVar[Phase] = Phase.FILTER
    adds_columns: ClassVar[tuple[str, ...]] = ("doc_words",)
    min_words: int = option(1, minimum=1, maximum=10_000)

    def _words(self, batch, table):
        return [float(len(batch.data.doc_texts[d].split())) for d in table.column("doc_idx").to_pylist()]

    def apply(self, batch):
        cand = set_column(batch.candidates, "doc_words", self._words(batch, batch.candidates), pa.float32())
        pos = set_column(batch.positives, "doc_words", self._words(batch, batch.positives), pa.float32())
        batch = batch.with_scored(cand, pos)
        return batch.keep(pc.greater_equal(cand.column("doc_words"), self.min_words))
'''


@pytest.fixture
def toy_stage(tmp_path, monkeypatch):
    """A new file in hnmine/stages/ (here: a folder added to the package's path); nothing else is edited."""
    folder = tmp_path / "more_stages"
    folder.mkdir()
    (folder / "doc_length.py").write_text(TOY_STAGE)
    monkeypatch.setattr(hnmine.stages, "__path__", [*hnmine.stages.__path__, str(folder)])
    monkeypatch.setattr("hnmine.stage._KINDS", dict(stage_kinds()))  # the new class leaves with the test
    monkeypatch.delitem(sys.modules, "hnmine.stages.doc_length", raising=False)
    yield stage_kinds()["doc_length_filter"]
    sys.modules.pop("hnmine.stages.doc_length", None)


def small_data() -> MiningData:
    docs = ["a b c d e", "a b", "a b c", "b c d e f g", "c d", "x y z w", "q"]
    return MiningData.from_pairs(["q0", "q1"], ["a b c", "c d e"], [f"d{i}" for i in range(len(docs))], docs,
                                 [(0, 0), (1, 3)])


def test_every_stage_module_registers_its_classes():
    kinds = stage_kinds()
    assert set(kinds) >= KNOWN
    for kind, cls in kinds.items():
        assert cls.kind == kind and issubclass(cls, Stage) and isinstance(cls.phase, Phase)
        assert cls.__module__.startswith("hnmine.stages."), cls


def test_a_kind_defined_twice_is_refused(monkeypatch):
    monkeypatch.setattr("hnmine.stage._KINDS", dict(stage_kinds()))
    with pytest.raises(TypeError, match="defined twice"):
        type("AnotherSelect", (Stage,), {"kind": "select", "phase": Phase.SELECT})
    with pytest.raises(TypeError, match="needs a phase"):
        type("Placeless", (Stage,), {"kind": "placeless"})


def test_a_new_stage_file_reaches_registry_toml_order_and_outputs(toy_stage, tmp_path):
    """Adding a stage = one new file: pipeline files name it, the order check places it, outputs write its score."""
    toy = toy_stage(min_words=3)
    pipeline = Pipeline([BM25Retriever(top_k=5), PositiveExcluder(), toy, NegativeSelector(num_negatives=2)],
                        chunk_size=1)
    path = tmp_path / "p.toml"
    path.write_text(pipeline_to_toml(pipeline))
    assert 'kind = "doc_length_filter"' in path.read_text() and "min_words = 3" in path.read_text()
    loaded = load_pipeline(path)
    assert loaded.stages[2] == toy
    # Its phase places it: a filter after select is refused, like any built-in filter.
    with pytest.raises(InputError, match="comes after 'select'"):
        check_composition([BM25Retriever(), PositiveExcluder(), NegativeSelector(), toy], "p")
    # Its declared range is checked, in Python and in pipeline files alike.
    with pytest.raises(InputError, match="--min-words must be >= 1"):
        toy_stage(min_words=0)
    path.write_text(path.read_text().replace("min_words = 3", "min_words = 0"))
    with pytest.raises(InputError, match="--min-words must be >= 1"):
        load_pipeline(path)
    # The score column it adds is written by every layout, after the built-in ones.
    assert score_columns()[-1] == "doc_words"
    data = small_data()
    batches = list(loaded.run(data))
    table = triplet_table(batches[0])
    assert "negative_doc_words" in table.column_names and "positive_doc_words" in table.column_names
    assert all(w >= 3 for w in table.column("negative_doc_words").to_pylist())
    assert "doc_words" in labeled_pair_table(batches[0]).column_names
    # The run summary names what it dropped in its own words.
    buffer = io.StringIO()
    print_summary(loaded.report, Console(file=buffer, width=200))
    dropped = loaded.report.stages[2]
    assert dropped.kind.endswith("doc_length_filter") and dropped.dropped > 0
    lines = {" ".join(line.replace("│", " ").split()) for line in buffer.getvalue().splitlines()}
    assert f"shorter than min_words {dropped.dropped:,}" in lines
    # A stage that reads it is accepted only after the stage that adds it.
    reader = NegativeSelector(score_column="doc_words")
    check_composition([BM25Retriever(), PositiveExcluder(), toy, reader], "p")
    with pytest.raises(InputError, match="reads score_column 'doc_words', which only doc_length_filter adds"):
        check_composition([BM25Retriever(), PositiveExcluder(), reader], "p")


def _bad_values(check: Check, hint_is_int: bool) -> list[Any]:
    if check.choices is not None:
        return ["no-such-choice"]
    bad: list[Any] = []
    if check.minimum is not None:
        bad.append(int(check.minimum) - 1 if hint_is_int else check.minimum - 1.0)
    if check.maximum is not None:
        bad.append(int(check.maximum) + 1 if hint_is_int else check.maximum + 1.0)
    if check.above is not None:
        bad.append(check.above)
    return bad or ([] if hint_is_int else [float("nan")])


REQUIRED = {"bi_encoder_denoise": {"model": "teacher"}}


def test_every_declared_range_is_enforced():
    """A stage whose own __post_init__ forgot super() would skip its declared checks: every one is tried, on every
    stage, on the flat options of ``mine`` (checked by validate) and on train-denoiser's."""
    from hnmine.jobs.train_denoiser import DenoiserTraining
    from hnmine.recipe import MineOptions
    from hnmine.stage import _hints, _number_kind

    tried = 0
    for kind, cls in [*stage_kinds().items(), ("mine", MineOptions), ("train", DenoiserTraining)]:
        hints = _hints(cls)
        for f in dataclasses.fields(cls):
            check = f.metadata.get("check")
            if check is None or not f.init:
                continue
            for value in _bad_values(check, _number_kind(hints[f.name]) is int):
                label = check.flag or "--" + f.name.replace("_", "-")
                with pytest.raises(InputError, match=label):
                    built = cls(**{**REQUIRED.get(kind, {}), f.name: value})
                    if isinstance(built, MineOptions):
                        built.validate()
                tried += 1
    assert tried >= 80


def test_stage_defaults_for_a_plain_stage():
    """What the base offers, so no caller asks whether a stage has it."""
    stage = PositiveExcluder()
    assert stage.notes() == {} and stage.take_chunk_counters() == {} and stage.parts() == []
    assert stage.pairs_scored is None and stage.score_column is None and stage.adds_columns == ()
    stage.prepare(small_data())  # nothing to set up
    hybrid = stage_kinds()["hybrid"]()
    assert [type(p).__name__ for p in hybrid.parts()] == ["BM25Retriever", "DenseRetriever"]


def test_a_pipeline_refuses_what_is_not_a_stage():
    class Duck:
        kind = "duck"

        def apply(self, batch: CandidateBatch) -> CandidateBatch:
            return batch

    with pytest.raises(TypeError, match="not a stage"):
        Pipeline([Duck()])



# -- each option's default defined once: every CLI default is its dataclass field's default ---------------------------

def _cli_params(command: str) -> dict[str, Any]:
    import typer.main

    from hnmine.cli import app

    group = typer.main.get_command(app)
    return {p.name: p for p in group.commands[command].params}  # type: ignore[attr-defined]


def _twins(params: dict[str, Any], sources: list[tuple[Any, dict[str, str]]]) -> dict[str, tuple[Any, Any]]:
    """CLI option -> (its default, the default of the dataclass field it sets)."""
    found = {}
    for name, param in params.items():
        for obj, renames in sources:
            field = renames.get(name, name)
            if field in {f.name for f in dataclasses.fields(obj)}:
                found[name] = (param.default, getattr(obj, field))
                break
    return found


COLUMN_RENAMES = {"query_id_column": "query_id", "query_column": "query", "doc_id_column": "doc_id",
                  "text_column": "text", "title_column": "title", "qrels_score_column": "qrels_score",
                  "positive_column": "pairs_positive"}


def test_every_mine_default_is_its_dataclass_default():
    from hnmine.commands import common
    from hnmine.io.inputs import ColumnNames
    from hnmine.recipe import MineOptions

    params = _cli_params("mine")
    twins = _twins(params, [(MineOptions(), {}), (MineOptions().dense, {"cache": "use_cache"}),
                            (ColumnNames(), COLUMN_RENAMES)])
    assert {k: cli_default for k, (cli_default, _) in twins.items()} == {k: field for k, (_, field) in twins.items()}
    # Every option the pipeline is built from has its twin: a new flag without a dataclass field fails here.
    panels = {common.RETRIEVAL, common.DENSE, common.DENOISE, common.SELECT, common.STRATEGY}
    pipeline_flags = {n for n, p in params.items() if getattr(p, "rich_help_panel", None) in panels}
    assert pipeline_flags - set(twins) == {"split_tiers"}
    assert len(twins) > 60


def test_every_denoise_train_and_synth_default_is_its_dataclass_default():
    from hnmine.io.inputs import ColumnNames
    from hnmine.io.triplets import TripletColumns
    from hnmine.jobs.train_denoiser import DenoiserTraining
    from hnmine.pipeline import CHUNK_SIZE
    from hnmine.recipe import MineOptions
    from hnmine.stages.cross_encoder import CrossEncoderScorer
    from hnmine.stages.dense import DenseRetriever
    from hnmine.stages.false_negatives import FalseNegativeFilter
    from hnmine.stages.synthetic import SyntheticNegatives

    triplet_columns = {"query_column": "query", "positive_column": "positive", "negative_column": "negative"}
    cases = {
        "denoise": ([(TripletColumns(), triplet_columns), (CrossEncoderScorer(), {}), (FalseNegativeFilter(), {}),
                     (DenseRetriever(), {}), (MineOptions(), {})],
                    {"query_column", "batch_size", "max_length", "dtype", "chunk_size", "max_score", "max_z"}),
        "train-denoiser": ([(DenoiserTraining(), {}), (ColumnNames(), COLUMN_RENAMES)],
                           {"base_model", "negatives_per_positive", "range_min", "max_length", "negatives_from"}),
        "synth": ([(SyntheticNegatives(), {"candidates_per_pair": "num_candidates", "cache": "use_cache"}),
                   (MineOptions(), {}), (ColumnNames(), COLUMN_RENAMES)],
                  {"num_negatives", "model", "scorer", "temperature", "max_new_tokens", "chunk_size", "seed"}),
    }
    for command, (sources, must_have) in cases.items():
        twins = _twins(_cli_params(command), sources)
        assert must_have <= set(twins), (command, must_have - set(twins))
        # On purpose: synth's --max-ratio is 0.95 only when neither --max-score nor --margin is given (the command
        # decides), and its --generator None is the stage's "" (no generator) until the command resolves it.
        differ = {k: v for k, v in twins.items()
                  if v[0] != v[1] and (command, k) not in {("synth", "max_ratio"), ("synth", "generator")}}
        assert not differ, (command, differ)
    assert _cli_params("denoise")["chunk_size"].default == CHUNK_SIZE


def test_teachers_declare_the_false_negative_rules_as_the_filter_does():
    """Both teachers hand their rule options to a FalseNegativeFilter by name: same names, same defaults (their own
    field order stays, since pipeline files list options in it)."""
    from hnmine.stages.bi_encoder_denoise import BiEncoderDenoiser
    from hnmine.stages.cross_encoder import CrossEncoderDenoiser
    from hnmine.stages.false_negatives import RULE_OPTIONS, FalseNegativeFilter

    def defaults(cls: type) -> dict[str, Any]:
        return {f.name: f.default for f in dataclasses.fields(cls) if f.name in RULE_OPTIONS}

    assert set(defaults(FalseNegativeFilter)) == set(RULE_OPTIONS)
    for teacher in (CrossEncoderDenoiser, BiEncoderDenoiser):
        assert defaults(teacher) == defaults(FalseNegativeFilter), teacher
    built = BiEncoderDenoiser(model="teacher", max_z=1.5, relabel=True, min_score=-0.5)
    assert built._filter == FalseNegativeFilter(max_z=1.5, relabel=True, min_score=-0.5, score_column="teacher_cosine")
