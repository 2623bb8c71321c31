"""``mine_hard_negatives`` with sentence-transformers' name and arguments, running hnmine's stages underneath.

Switching is one import line::

    # from sentence_transformers.util import mine_hard_negatives
    from hnmine.compat import mine_hard_negatives

The arguments, defaults, output columns and output formats are sentence-transformers' (v6.2). The work is
hnmine's: the model encodes exactly as sentence-transformers would (``encode_query`` / ``encode_document``, the
same prompts), then an exact FAISS search, :class:`~hnmine.stages.exclusion.PositiveExcluder`,
:class:`~hnmine.stages.window.RankWindow`, :class:`~hnmine.stages.cross_encoder.CrossEncoderDenoiser` or
:class:`~hnmine.stages.false_negatives.FalseNegativeFilter`, and :class:`~hnmine.stages.selection.NegativeSelector`.

Where the semantics deliberately differ (each also in the README, "Coming from sentence-transformers"):

* ``range_min`` / ``range_max`` count retriever ranks among the non-positive candidates, *before* any threshold.
  sentence-transformers applies them after the margins and ``max_score`` / ``min_score`` have removed
  candidates (and, with a cross-encoder, over the cross-encoder's order), so its "skip the top 10" skips a
  different 10 whenever a threshold is set. hnmine's window is a fixed false-negative guard that thresholds
  cannot move, and the cross-encoder only scores candidates that could still be emitted.
* With a cross-encoder, the negatives kept are the best *retriever*-ranked survivors of the cross-encoder
  thresholds; sentence-transformers re-sorts by the cross-encoder score. Output scores are the cross-encoder's
  in both (the scale of the thresholds).
* A candidate whose text equals a positive's or the query's (after Unicode/case/space normalisation) is never a
  negative; sentence-transformers only excludes the positives' exact corpus entries.
* ``max_score`` drops ``s >= max_score`` and ``absolute_margin`` drops ``s >= p - m`` (sentence-transformers:
  strictly greater); they differ only on exact ties.
* ``sampling_strategy="random"`` is seeded (``seed``, default 0): the same call gives the same dataset.
* ``use_faiss``, ``faiss_batch_size`` and ``use_multi_process`` are accepted and ignored: the search is always an
  exact FAISS inner-product index, chunked by queries.

Everything not listed matches: the default ``range_max``, the margins' definitions on the query's lowest positive
(sign-safe ``relative_margin``), the cross-encoder rescoring only when a threshold is set, ``include_positives``
forcing the n-tuple format, rows dropped (and counted when ``verbose``) where too few negatives survive.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hnmine.candidates import CE_SCORE, SCORE
from hnmine.errors import InputError
from hnmine.io.inputs import pairs_data
from hnmine.pipeline import Pipeline
from hnmine.stage import Stage
from hnmine.stages.cross_encoder import CrossEncoderDenoiser
from hnmine.stages.dense import DenseRetriever
from hnmine.stages.exclusion import PositiveExcluder
from hnmine.stages.false_negatives import FalseNegativeFilter
from hnmine.stages.selection import NegativeSelector
from hnmine.stages.window import RankWindow

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = ("triplet", "n-tuple", "labeled-pair", "labeled-list")


def mine_hard_negatives(
    dataset: Any, model: Any, anchor_column_name: str | None = None, positive_column_name: str | None = None,
    corpus: list[str] | None = None, cross_encoder: Any | None = None, range_min: int = 0,
    range_max: int | None = None, max_score: float | None = None, min_score: float | None = None,
    absolute_margin: float | None = None, relative_margin: float | None = None, num_negatives: int = 3,
    sampling_strategy: Literal["random", "top"] = "top", query_prompt_name: str | None = None,
    query_prompt: str | None = None, corpus_prompt_name: str | None = None, corpus_prompt: str | None = None,
    include_positives: bool = False,
    output_format: Literal["triplet", "n-tuple", "labeled-pair", "labeled-list"] = "triplet",
    output_scores: bool = False, batch_size: int = 32, faiss_batch_size: int = 16384, use_faiss: bool = False,
    use_multi_process: list[str] | bool = False, verbose: bool = True, cache_folder: str | None = None,
    as_triplets: bool | None = None, margin: float | None = None, *, seed: int = 0,
) -> Any:
    """Add hard negatives to a ``datasets.Dataset`` of (anchor, positive) pairs; sentence-transformers' contract.

    ``model`` is a ``SentenceTransformer`` (or a name/path loaded as one); ``cross_encoder`` a ``CrossEncoder``
    (or a name/path). Returns a ``datasets.Dataset`` in ``output_format`` with the columns sentence-transformers
    gives: ``triplet`` (anchor, positive, negative[, scores]), ``n-tuple`` (anchor, positive,
    negative_1..n[, scores]), ``labeled-pair`` (anchor, positive-column document, label | score),
    ``labeled-list`` (anchor, [documents], labels | scores). ``seed`` (keyword only) seeds ``random`` sampling.
    The module docstring lists where hnmine's semantics deliberately differ.
    """
    try:
        from datasets import Dataset
    except ImportError:
        raise ImportError("hnmine.compat needs the 'datasets' package: pip install 'hnmine[datasets]'") from None
    del faiss_batch_size, use_faiss, use_multi_process  # always exact FAISS search, chunked by queries
    anchor_column_name, positive_column_name = _columns(dataset, anchor_column_name, positive_column_name)
    output_format, output_scores = _output_format(output_format, output_scores, as_triplets, include_positives)
    if margin is not None:
        absolute_margin = margin
    if num_negatives < 1:
        raise InputError(f"num_negatives must be at least 1, got num_negatives={num_negatives}.")

    anchors = [str(a) for a in dataset[anchor_column_name]]
    positives = [str(p) for p in dataset[positive_column_name]]
    data = pairs_data(anchors, positives, doc_texts=list(corpus or []),
                      doc_ids=[f"c{i}" for i in range(len(corpus or []))])
    max_positives = int(data.positive_counts.max())
    thresholds = any(v is not None for v in (absolute_margin, relative_margin, max_score))
    range_max = _range_max(range_min, range_max, num_negatives, max_positives,
                           thresholds or (cross_encoder is not None and min_score is not None), verbose)

    st_model = _sentence_transformer(model)
    rescore = cross_encoder is not None and (thresholds or min_score is not None)
    filters = _Filters(max_score, min_score, absolute_margin,
                       None if relative_margin is None else 1.0 - relative_margin,
                       _cross_encoder_path(cross_encoder) if rescore else None, thresholds or min_score is not None)
    with tempfile.TemporaryDirectory(prefix="hnmine-compat-") as tmp:
        query_file, corpus_file = Path(tmp) / "queries.npy", Path(tmp) / "corpus.npy"
        for path, texts, role, prompt, name in ((query_file, data.query_texts, "query", query_prompt,
                                                 query_prompt_name),
                                                (corpus_file, data.doc_texts, "document", corpus_prompt,
                                                 corpus_prompt_name)):
            np.save(path, _embeddings(st_model, texts, role, prompt, name, batch_size, verbose, cache_folder))
        stages: list[Stage] = [
            DenseRetriever(top_k=range_max + max_positives + 1, corpus_embeddings=str(corpus_file),
                           query_embeddings=str(query_file), use_cache=False),
            *([] if include_positives else [PositiveExcluder()]), RankWindow(range_min, range_max),
            *filters.stages(batch_size), NegativeSelector(num_negatives=num_negatives, strategy=sampling_strategy,
                                                          seed=seed)]
        mined = _collect(Pipeline(stages), data, CE_SCORE if rescore else SCORE)
    rows = _format(mined, data, output_format, output_scores, num_negatives, anchor_column_name,
                   positive_column_name)
    if verbose:
        negatives = sum(len(n) for _, _, n, _ in mined)
        short = sum(1 for _, _, n, _ in mined if len(n) < num_negatives)
        print(f"hnmine: {negatives:,} negatives for {len(mined):,} queries; {short:,} queries have fewer than "
              f"{num_negatives}; {len(rows[anchor_column_name]):,} rows in {output_format} format.")
    return Dataset.from_dict(rows)


def _range_max(range_min: int, range_max: int | None, num_negatives: int, max_positives: int, wide: bool,
               verbose: bool) -> int:
    """sentence-transformers' default window (wider when score rules will drop candidates), checked."""
    if range_max is None:
        range_max = range_min + (10 * num_negatives if wide else num_negatives) + max_positives
        if verbose:
            print(f"Setting range_max to {range_max} based on the provided parameters.")
    if range_min < 0:
        raise InputError(f"range_min must be non-negative, got range_min={range_min}.")
    if num_negatives > range_max - range_min:
        raise InputError(f"Cannot mine {num_negatives} negatives per query: only {range_max - range_min} candidates "
                         f"remain after skipping the first range_min={range_min} of range_max={range_max}.")
    return range_max


def _columns(dataset: Any, anchor: str | None, positive: str | None) -> tuple[str, str]:
    """The anchor and positive columns: the named ones, else the first two (sentence-transformers' rule)."""
    if len(dataset) == 0:
        raise InputError("The dataset is empty. Please provide a non-empty dataset.")
    columns = list(dataset.column_names)
    if not anchor or anchor not in columns:
        anchor = columns[0]
    if not positive or positive not in columns:
        if len(columns) < 2:
            raise InputError("Dataset must contain at least two columns to select the positive column automatically.")
        positive = columns[1]
    return anchor, positive


def _output_format(fmt: str, scores: bool, as_triplets: bool | None, include_positives: bool) -> tuple[str, bool]:
    """sentence-transformers' output format, after its deprecated aliases (as_triplets, n-tuple-scores)."""
    if as_triplets is not None:
        fmt = "triplet" if as_triplets else "n-tuple"
    if fmt == "n-tuple-scores":
        fmt, scores = "n-tuple", True
    if include_positives and fmt != "n-tuple":
        logger.warning('include_positives=True: output_format set to "n-tuple" so that the ranking is kept.')
        fmt = "n-tuple"
    if fmt not in OUTPUT_FORMATS:
        raise InputError(f"Invalid output_format: {fmt}. Must be one of {', '.join(OUTPUT_FORMATS)}.")
    return fmt, scores


@dataclass
class _Filters:
    """The score rules: on the cross-encoder's scores when one re-scores, else on the retriever's cosine."""

    max_score: float | None
    min_score: float | None
    margin: float | None
    max_ratio: float | None
    cross_encoder: str | None
    any_rule: bool

    def stages(self, batch_size: int) -> list[Stage]:
        if self.cross_encoder is not None:
            return [CrossEncoderDenoiser(model=self.cross_encoder, max_score=self.max_score, margin=self.margin,
                                         max_ratio=self.max_ratio, min_score=self.min_score, batch_size=batch_size)]
        if self.any_rule:
            return [FalseNegativeFilter(self.max_score, self.margin, self.max_ratio, score_column=SCORE,
                                        min_score=self.min_score)]
        return []


def _sentence_transformer(model: Any) -> Any:
    if isinstance(model, str | os.PathLike):
        from hnmine.engines.encoder import load_sentence_transformer

        return load_sentence_transformer(str(model), None, "float32")
    return model


def _cross_encoder_path(cross_encoder: Any) -> str:
    """hnmine's denoiser loads its cross-encoder by name or path; a loaded ``CrossEncoder`` is reloaded from its own."""
    if isinstance(cross_encoder, str | os.PathLike):
        return str(cross_encoder)
    inner = getattr(cross_encoder, "model", None)
    path = getattr(inner, "name_or_path", None) or getattr(getattr(inner, "config", None), "_name_or_path", None)
    if not path:
        raise InputError("cross_encoder: pass a CrossEncoder loaded from a name or path, or the name/path itself")
    return str(path)


def _embeddings(model: Any, texts: list[str], kind: str, prompt: str | None, prompt_name: str | None,
                batch_size: int, verbose: bool, cache_folder: str | None) -> np.ndarray:
    """As sentence-transformers encodes: ``encode_query`` / ``encode_document`` with the same prompt rules.

    ``cache_folder`` keys on the model, prompt and texts (sentence-transformers' scheme), so changing a prompt
    never returns embeddings made with another.
    """
    cache_file = None
    if cache_folder:
        os.makedirs(cache_folder, exist_ok=True)
        name = getattr(getattr(model, "model_card_data", None), "base_model", None) or ""
        digest = hashlib.sha256(repr((name, prompt, prompt_name, texts)).encode()).hexdigest()
        cache_file = Path(cache_folder) / f"{'query' if kind == 'query' else 'corpus'}_embeddings_{digest}.npy"
        if cache_file.exists():
            return np.load(cache_file)
    encode = getattr(model, f"encode_{kind}", None) or model.encode
    emb = encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                 show_progress_bar=verbose, prompt_name=prompt_name, prompt=prompt)
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    if cache_file is not None:
        np.save(cache_file, emb)
    return emb


Mined = list[tuple[int, list[tuple[int, float]], list[int], list[float]]]


def _collect(pipeline: Pipeline, data: Any, column: str) -> Mined:
    """Per query: (query, [(positive doc, score)], negative docs best score first, their scores)."""
    out: Mined = []
    for batch in pipeline.run(data):
        cand, pos = batch.candidates.to_pydict(), batch.positives.to_pydict()
        negs: dict[int, list[tuple[float, int, int]]] = {}
        for q, d, r, s in zip(cand["query_idx"], cand["doc_idx"], cand["rank"], cand.get(column, cand[SCORE])):
            negs.setdefault(q, []).append((-s, r, d))
        poss: dict[int, list[tuple[int, float]]] = {}
        for q, d, s in zip(pos["query_idx"], pos["doc_idx"], pos.get(column, pos.get(SCORE, []))):
            poss.setdefault(q, []).append((d, s))
        for q in batch.queries.tolist():
            ranked = sorted(negs.get(q, []))  # by score, best first, as sentence-transformers orders its output
            out.append((q, poss.get(q, []), [d for _, _, d in ranked], [-s for s, _, _ in ranked]))
    return out


def _format(mined: Mined, data: Any, fmt: str, scores: bool, n: int, anchor: str, positive: str) -> dict[str, list]:
    """sentence-transformers' output layouts, row for row."""
    text = data.doc_texts
    if fmt == "triplet":
        rows: dict[str, list] = {anchor: [], positive: [], "negative": [], **({"scores": []} if scores else {})}
        for q, poss, negs, nscores in mined:
            for p, ps in poss:
                for d, s in zip(negs, nscores):
                    rows[anchor].append(data.query_texts[q])
                    rows[positive].append(text[p])
                    rows["negative"].append(text[d])
                    if scores:
                        rows["scores"].append([ps, s])
        return rows
    if fmt == "n-tuple":
        rows = {anchor: [], positive: [], **{f"negative_{i + 1}": [] for i in range(n)},
                **({"scores": []} if scores else {})}
        for q, poss, negs, nscores in mined:
            if len(negs) < n:
                continue
            for p, ps in poss:
                rows[anchor].append(data.query_texts[q])
                rows[positive].append(text[p])
                for i in range(n):
                    rows[f"negative_{i + 1}"].append(text[negs[i]])
                if scores:
                    rows["scores"].append([ps, *nscores[:n]])
        return rows
    if fmt == "labeled-pair":
        label = "score" if scores else "label"
        rows = {anchor: [], positive: [], label: []}
        for q, poss, negs, nscores in mined:
            for d, s, y in [(p, ps, 1) for p, ps in poss] + [(d, s, 0) for d, s in zip(negs, nscores)]:
                rows[anchor].append(data.query_texts[q])
                rows[positive].append(text[d])
                rows[label].append(s if scores else y)
        return rows
    label = "scores" if scores else "labels"
    rows = {anchor: [], positive: [], label: []}
    for q, poss, negs, nscores in mined:
        if not negs:
            continue
        for p, ps in poss:
            rows[anchor].append(data.query_texts[q])
            rows[positive].append([text[p]] + [text[d] for d in negs])
            rows[label].append([ps, *nscores] if scores else [1] + [0] * len(negs))
    return rows
