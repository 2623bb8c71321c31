"""Every output layout goes through the loading code of the trainer it is written for.

FlagEmbedding: its own ``AbsEmbedderTrainDataset`` (copied unmodified into tests/third_party, see the README
there), with and without knowledge distillation and with a query instruction. sentence-transformers: the file
loaded with ``datasets`` as its docs show, its data collator, and a loss forward pass on a tiny model.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hnmine.cli import app

runner = CliRunner()


def _mine(sample_dir, out, *extra: str):
    result = runner.invoke(app, ["mine", "--queries", str(sample_dir / "queries.parquet"),
                                 "--corpus", str(sample_dir / "corpus.parquet"), "--qrels",
                                 str(sample_dir / "qrels.parquet"), "--retriever", "bm25", "--output", str(out),
                                 "--quiet", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(out.with_name(out.name + ".manifest.json").read_text())


@pytest.mark.parametrize("distill", [False, True])
def test_flagembedding_output_loads_in_flagembeddings_own_dataset(sample_dir, tmp_path, distill):
    from tests.third_party.flagembedding.AbsArguments import AbsEmbedderDataArguments
    from tests.third_party.flagembedding.AbsDataset import AbsEmbedderTrainDataset

    out = tmp_path / "fe.jsonl"
    # A BM25 ceiling that empties the window of some queries: those must not be written as "neg": [].
    manifest = _mine(sample_dir, out, "--format", "flagembedding", "--max-score", "12", "--prompt", "Represent: ")
    skipped = manifest["flagembedding"]["queries_without_negatives_not_written"]
    assert skipped > 0 and manifest["flagembedding"]["scores"] == "BM25 score"
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) + skipped == manifest["counts"]["queries"]
    args = AbsEmbedderDataArguments(train_data=[str(out)], cache_path=str(tmp_path / "hf-cache"), train_group_size=8,
                                    knowledge_distillation=distill, query_instruction_for_retrieval="unused: ")
    dataset = AbsEmbedderTrainDataset(args, tokenizer=None)
    assert len(dataset) == len(records)
    for i in range(len(dataset)):
        query, passages, teacher_scores = dataset[i]
        assert query == "Represent: " + records[i]["query"]  # the per-record prompt replaces the instruction
        assert len(passages) == 8 and passages[0] in records[i]["pos"]
        assert (teacher_scores is None) != distill
        if distill:
            assert len(teacher_scores) == 8 and all(isinstance(s, float) for s in teacher_scores)


def test_flagembedding_scores_say_cross_encoder_scale(sample_dir, tmp_path, tiny_cross_encoder):
    out = tmp_path / "fe.jsonl"
    manifest = _mine(sample_dir, out, "--format", "flagembedding", "--cross-encoder", tiny_cross_encoder,
                     "--num-negatives", "2", "--range-max", "15")
    assert manifest["flagembedding"]["scores"].startswith("cross-encoder score")
    record = json.loads(out.read_text().splitlines()[0])
    assert len(record["neg_scores"]) == len(record["neg"]) and 0 <= record["neg_scores"][0] <= 1


def test_prompt_without_flagembedding_format_is_refused(sample_dir, tmp_path):
    result = runner.invoke(app, ["mine", "--beir", str(sample_dir), "--prompt", "x", "--output",
                                 str(tmp_path / "o.parquet")])
    assert result.exit_code == 2 and "--prompt is FlagEmbedding's per-record field" in result.output


LAYOUTS = {  # layout -> (columns a sentence-transformers loss reads, in order; loss)
    "triplet": (["query", "positive", "negative"], "mnrl"),
    "n-tuple": (["query", "positive", "negative_1", "negative_2", "negative_3"], "mnrl"),
    "labeled-pair": (["query", "passage", "label"], "bce"),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_parquet_layouts_train_in_sentence_transformers(sample_dir, tmp_path, tiny_bi_encoder, layout):
    from datasets import load_dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers import SentenceTransformerTrainingArguments as Args
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    out = tmp_path / "mined.parquet"
    _mine(sample_dir, out, "--format", layout, "--num-negatives", "3", "--no-audit-columns")
    columns, loss_name = LAYOUTS[layout]
    train = load_dataset("parquet", data_files=str(out), split="train")
    assert train.column_names == columns  # --no-audit-columns: exactly what a loss reads, nothing to drop
    model = SentenceTransformer(tiny_bi_encoder, device="cpu")
    # (query, passage, label) is read by a bi-encoder through a label-aware loss
    loss = losses.MultipleNegativesRankingLoss(model) if loss_name == "mnrl" else losses.ContrastiveLoss(model)
    args = Args(output_dir=str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=8, report_to=[],
                batch_sampler=BatchSamplers.NO_DUPLICATES, save_strategy="no", use_cpu=True, logging_steps=1)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train, loss=loss)
    result = trainer.train()
    assert result.global_step == 2 and result.training_loss == result.training_loss  # ran, and not NaN


def _tevatron_group(group: dict, item: int, train_group_size: int, epoch: int = 0, seed: int = 42) -> list[str]:
    """The legacy-format branch of Tevatron's ``TrainDataset.__getitem__`` (texttron/tevatron,
    src/tevatron/retriever/dataset.py, commit 0a9626f), line for line minus the trainer plumbing: Tevatron
    needs torch, PIL and its own trainer to import, and is not on PyPI in this version."""
    import random

    _hashed_seed = hash(item + seed)
    selected_positive = group["positive_passages"][(_hashed_seed + epoch) % len(group["positive_passages"])]
    texts = [selected_positive["title"] + " " + selected_positive["text"]
             if "title" in selected_positive else selected_positive["text"]]
    negative_size = train_group_size - 1
    if len(group["negative_passages"]) < negative_size:
        selected_negatives = random.choices(group["negative_passages"], k=negative_size)
    elif train_group_size == 1:
        selected_negatives = []
    else:
        offset = epoch * negative_size % len(group["negative_passages"])
        selected_negatives = list(group["negative_passages"])
        random.Random(_hashed_seed).shuffle(selected_negatives)
        selected_negatives = selected_negatives * 2
        selected_negatives = selected_negatives[offset: offset + negative_size]
    for negative in selected_negatives:
        texts.append(negative["title"] + " " + negative["text"] if "title" in negative else negative["text"])
    return texts


def test_tevatron_output_loads_as_tevatron_reads_it(sample_dir, tmp_path):
    import pyarrow.parquet as pq
    from datasets import load_dataset

    out = tmp_path / "tev.jsonl"
    manifest = _mine(sample_dir, out, "--format", "tevatron", "--max-score", "12")
    skipped = manifest["tevatron"]["queries_without_negatives_not_written"]
    assert skipped > 0  # queries the ceiling emptied are not written (Tevatron would crash on them)
    train = load_dataset("json", data_files=str(out), split="train", cache_dir=str(tmp_path / "hf-cache"))
    assert len(train) + skipped == manifest["counts"]["queries"]
    corpus = pq.read_table(sample_dir / "corpus.parquet").to_pydict()
    texts_by_id = dict(zip(corpus["doc_id"], corpus["text"]))
    for item in range(len(train)):
        group = train[item]
        texts = _tevatron_group(group, item, train_group_size=8)
        assert len(texts) == 8 and all(t.strip() for t in texts)
        for passage in group["positive_passages"] + group["negative_passages"]:
            assert passage["text"].endswith(texts_by_id[passage["docid"]])  # the title is in the text, once
