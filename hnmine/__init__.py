"""hnmine: offline hard-negative mining for retrieval and embedding models.

The stages are plain dataclasses (subclasses of ``Stage``) with one method, ``apply(batch) -> batch``; a
``Pipeline`` runs them over chunks of queries. The CLI (``hnmine mine`` / ``hnmine denoise``) is a thin layer
over this API.
"""

__version__ = "0.1.0"

from hnmine.candidates import CandidateBatch
from hnmine.data import MiningData
from hnmine.engines.encoder import Encoder
from hnmine.errors import InputError
from hnmine.io.inputs import load_beir, load_pairs_input, load_qrels_inputs
from hnmine.pipeline import MiningReport, Pipeline
from hnmine.stage import Phase, Stage, option
from hnmine.stages.ambiguous import AmbiguousZoneFilter
from hnmine.stages.bm25 import BM25Retriever
from hnmine.stages.cross_encoder import CrossEncoderDenoiser, CrossEncoderScorer
from hnmine.stages.dense import DenseRetriever
from hnmine.stages.exclusion import PositiveExcluder
from hnmine.stages.false_negatives import FalseNegativeFilter
from hnmine.stages.hybrid import HybridRetriever
from hnmine.stages.selection import NegativeSelector
from hnmine.stages.window import RankWindow

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
    "Phase",
    "Pipeline",
    "PositiveExcluder",
    "RankWindow",
    "Stage",
    "load_beir",
    "load_pairs_input",
    "load_qrels_inputs",
    "option",
]
