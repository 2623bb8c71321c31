import pytest

from hnmine.errors import InputError
from hnmine.jobs.train_denoiser import DenoiserTraining, training_pairs
from tests.conftest import make_data


def dense_labels():
    docs = {f"d{i}": f"topic {i % 3} passage number {i} about {'apples' if i % 2 else 'pears'}" for i in range(30)}
    positives = {"q0": [f"d{i}" for i in range(0, 12)], "q1": ["d20", "d21"]}
    return make_data({"q0": "topic 0 apples", "q1": "topic 2 pears"}, docs, positives)


@pytest.mark.parametrize("source", ["bm25", "dense"])
def test_positives_are_capped_per_query_and_negatives_are_never_labelled_positives(source):
    data = dense_labels()
    cfg = DenoiserTraining(negatives_per_positive=3, range_min=0, range_max=10, max_positives_per_query=4,
                           negatives_from=source)
    queries, passages, labels = training_pairs(data, cfg)
    per_query = {q: sum(1 for qq, y in zip(queries, labels) if qq == q and y == 1.0) for q in data.query_texts}
    assert per_query == {"topic 0 apples": 4, "topic 2 pears": 2}
    positive_texts = {data.doc_texts[int(d)] for q in range(2) for d in data.positives_of(q)}
    for q, p, y in zip(queries, passages, labels):
        if y == 0.0:
            own = {data.doc_texts[int(d)] for d in data.positives_of(data.query_texts.index(q))}
            assert p not in own
    assert sum(1 for y in labels if y == 0.0) == 6
    assert {p for p, y in zip(passages, labels) if y == 1.0} <= positive_texts
    # the same seed picks the same positives
    assert training_pairs(data, cfg) == (queries, passages, labels)


def test_unknown_negative_source_and_zero_positive_cap_are_refused():
    with pytest.raises(InputError, match="negatives-from"):
        DenoiserTraining(negatives_from="colbert")
    with pytest.raises(InputError, match="max-positives-per-query"):
        DenoiserTraining(max_positives_per_query=0)
