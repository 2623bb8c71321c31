"""hnmine: offline hard-negative mining for retrieval and embedding models.

The stages are plain objects with one method, ``apply(batch) -> batch``; a ``Pipeline`` runs them over
chunks of queries. The CLI (``hnmine mine`` / ``hnmine denoise``) is a thin layer over this API.
"""

__version__ = "0.1.0"

from hnmine.ambiguous import AmbiguousZoneFilter
from hnmine.bm25 import BM25Retriever
from hnmine.candidates import CandidateBatch
from hnmine.cross_encoder import CrossEncoderDenoiser, CrossEncoderScorer
from hnmine.data import MiningData
from hnmine.dense import DenseRetriever
from hnmine.encoder import Encoder
from hnmine.errors import InputError
from hnmine.exclusion import PositiveExcluder
from hnmine.false_negatives import FalseNegativeFilter
from hnmine.hybrid import HybridRetriever
from hnmine.io import load_beir, load_pairs_input, load_qrels_inputs
from hnmine.pipeline import MiningReport, Pipeline
from hnmine.selection import NegativeSelector
from hnmine.window import RankWindow

__all__ = [
    "AmbiguousZoneFilter",
    "BM25Retriever",
    "CandidateBatch",
    "CrossEncoderDenoiser",
    "CrossEncoderScorer",
    "DenseRetriever",
    "Encoder",
    "FalseNegativeFilter",
    "HybridRetriever",
    "InputError",
    "MiningData",
    "MiningReport",
    "NegativeSelector",
    "Pipeline",
    "PositiveExcluder",
    "RankWindow",
    "load_beir",
    "load_pairs_input",
    "load_qrels_inputs",
]
