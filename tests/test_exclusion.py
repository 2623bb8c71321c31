import numpy as np
import pyarrow as pa

from hnmine.candidates import CANDIDATE_SCHEMA, CandidateBatch
from hnmine.stages.exclusion import PositiveExcluder
from tests.conftest import make_data


def batch_with(data, rows):
    """rows: (query_idx, doc_idx, rank, score)."""
    q, d, r, s = zip(*rows)
    table = pa.table({"query_idx": pa.array(q, pa.int32()), "doc_idx": pa.array(d, pa.int32()),
                      "rank": pa.array(r, pa.int32()), "score": pa.array(s, pa.float32()),
                      "retriever": pa.array(["t"] * len(q))}, schema=CANDIDATE_SCHEMA)
    return CandidateBatch.start(data, np.arange(data.num_queries)).with_candidates(table)


def test_positive_by_id_by_duplicate_text_and_query_text_never_survive():
    data = make_data(
        {"q1": "What causes rain?", "q2": "How do magnets work?"},
        {"p1": "Rain forms when water vapour condenses.",
         "dup": "  rain forms when WATER vapour condenses. ",  # same text as p1, another id
         "self": "what causes rain?",  # the query itself sitting in the corpus
         "n1": "Clouds are made of droplets.",
         "p2": "Magnets align electron spins.",
         "n2": "Iron is a metal."},
        {"q1": ["p1"], "q2": ["p2"]},
    )
    rows = [(0, 0, 1, .9), (0, 1, 2, .9), (0, 2, 3, .8), (0, 3, 4, .5), (0, 4, 5, .1),
            (1, 4, 1, .9), (1, 5, 2, .3), (1, 0, 3, .2)]
    out = PositiveExcluder().apply(batch_with(data, rows)).candidates.to_pydict()
    kept = set(zip(out["query_idx"], out["doc_idx"]))
    assert kept == {(0, 3), (0, 4), (1, 5), (1, 0)}
    # A document that is a positive of *another* query is a fine negative here (p1 for q2, p2 for q1).
    assert (1, 0) in kept and (0, 4) in kept


def test_survivors_are_reranked_from_one():
    data = make_data({"q": "a"}, {"p": "pos", "x": "x", "y": "y"}, {"q": ["p"]})
    out = PositiveExcluder().apply(batch_with(data, [(0, 0, 1, .9), (0, 1, 2, .8), (0, 2, 3, .7)]))
    assert out.candidates.column("doc_idx").to_pylist() == [1, 2]
    assert out.candidates.column("rank").to_pylist() == [1, 2]


def test_text_matching_can_be_turned_off_but_id_matching_cannot():
    data = make_data({"q": "a"}, {"p": "same", "copy": "same"}, {"q": ["p"]})
    batch = batch_with(data, [(0, 0, 1, .9), (0, 1, 2, .9)])
    assert PositiveExcluder(by_text=False).apply(batch).candidates.column("doc_idx").to_pylist() == [1]
    assert PositiveExcluder().apply(batch).num_candidates == 0


def test_queries_with_identical_text_share_their_positives():
    data = make_data({"q1": "Is the sky blue?", "q2": "is the  sky BLUE?"},
                     {"p1": "Rayleigh scattering.", "p2": "Blue light scatters more.", "n": "Grass is green."},
                     {"q1": ["p1"], "q2": ["p2"]})
    out = PositiveExcluder().apply(batch_with(data, [(0, 1, 1, .9), (0, 2, 2, .5), (1, 0, 1, .9), (1, 2, 2, .5)]))
    assert out.candidates.column("doc_idx").to_pylist() == [2, 2]
