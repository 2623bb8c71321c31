"""Exact inner-product top-k as blocked matrix products in torch, on the device the vectors live on.

Exact search costs ``2 * queries * passages * dim`` FLOPs: at MS MARCO size (500k x 8.8M x 384) that is about
3.4 PFLOP, an hour of a many-core CPU and seconds of one GPU. So when the embeddings are made on a GPU the
search runs there too, as ``queries @ corpus.T`` over blocks, never as one (queries x corpus) matrix:

* the corpus is stored on the device once, in half precision by default (8.8M x 384 takes 6.8 GB in float16,
  13.5 GB in float32), or streamed block by block from host memory when it does not fit the memory budget;
* queries go in blocks; each (query block x corpus block) score tile has a bounded size, and a running top
  list per query is merged with each tile's top list (``torch.topk`` of the concatenation);
* half-precision scores are only used to *select*: every selected candidate is re-scored in float32 from the
  host's float32 vectors, and the list is sorted by (higher score, smaller document index), as the FAISS flat
  index and ``sharded_search.merge_topk`` order it. A few more candidates than ``k`` are selected, and the
  answer is certified per query: reduced precision moves a unit-vector score by at most ``eps`` (see
  ``score_error_bound``), so a passage left out scores at most ``lowest selected half-precision score + eps``
  exactly; when the k-th exact score is above that, nothing left out can belong in the top k. Queries that
  fail the check (crowded near the k-th score) are searched again with four times as many candidates, until
  they pass or every passage is a candidate. The result is therefore the exact float32 top-k, equal to the
  FAISS flat index's up to float32 rounding of near-ties.

The same code runs on CPU (tests run it there against FAISS, in float16 and bfloat16 too); on CPU the product
defaults to float32 and FAISS remains hnmine's CPU path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["STORAGE_DTYPES", "TorchExactSearch", "default_storage_dtype", "score_error_bound"]

STORAGE_DTYPES = ("auto", "float32", "float16", "bfloat16")


def default_storage_dtype(device: str) -> str:
    """float16 on a GPU (tensor-core products, half the memory), float32 elsewhere (CPUs lack fast fp16)."""
    return "float16" if str(device).startswith("cuda") else "float32"


def _unit_roundoff(dtype: Any, device: str) -> float:
    import torch

    if dtype == torch.float32:
        # TF32 products (when a user enables them) round inputs to 10 mantissa bits, like float16.
        tf32 = str(device).startswith("cuda") and torch.backends.cuda.matmul.allow_tf32
        return 2.0**-11 if tf32 else 2.0**-24
    return float(torch.finfo(dtype).eps) / 2


def score_error_bound(dtype: Any, device: str, dim: int) -> float:
    """Largest change reduced precision can make to ``q . d`` for ``|q| = |d| = 1`` (scale by the norms).

    Rounding each input to ``u`` relative error moves the product by at most ``(2u + u^2)|q||d|``; a product
    returned in that precision is rounded once more (``u``); float32 accumulation adds ``dim * 2^-24`` at
    worst. One extra ``u`` of slack covers accumulation orders that differ between kernels.
    """
    u = _unit_roundoff(dtype, device)
    return 4 * u + u * u + dim * 2.0**-24


@dataclass
class TorchExactSearch:
    """Exact inner-product top-k of query vectors against one corpus, computed on ``device`` with torch.

    ``doc_emb`` (float32, host memory, possibly memory-mapped) is the reference the answers are exact against;
    the device holds a copy in ``dtype``. ``tile_bytes`` bounds each score tile and ``memory_bytes`` the corpus
    copy (beyond it, corpus blocks are streamed from host memory for every query block).
    """

    doc_emb: np.ndarray
    device: str = "cpu"
    dtype: str = "auto"
    query_block: int = 4096
    tile_bytes: int = 512 * 2**20
    memory_bytes: int | None = None
    extra_candidates: int = 32
    _resident: Any = field(default=None, init=False, repr=False)
    _torch_dtype: Any = field(default=None, init=False, repr=False)
    _max_doc_norm: float = field(default=1.0, init=False, repr=False)
    retries: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        import torch

        if self.dtype not in STORAGE_DTYPES:
            raise ValueError(f"search dtype {self.dtype!r}: expected one of {', '.join(STORAGE_DTYPES)}")
        name = default_storage_dtype(self.device) if self.dtype == "auto" else self.dtype
        self._torch_dtype = getattr(torch, name)
        n, d = self.doc_emb.shape
        self._max_doc_norm = float(np.sqrt(max((self._block_norms2(s, e) for s, e in self._doc_blocks(65_536)),
                                               default=0.0))) if n else 0.0
        budget = self.memory_bytes if self.memory_bytes is not None else self._default_memory_bytes()
        if n * d * self._torch_dtype.itemsize <= budget:
            self._resident = torch.empty((n, d), dtype=self._torch_dtype, device=self.device)
            for start, end in self._doc_blocks(65_536):
                self._resident[start:end] = self._to_device(self.doc_emb[start:end])

    def _default_memory_bytes(self) -> int:
        import torch

        if str(self.device).startswith("cuda"):
            free, _ = torch.cuda.mem_get_info(torch.device(self.device))
            return int(free * 0.5)  # the rest for score tiles, the encoder, the cross-encoder
        return 2**62  # host memory: the float32 reference is there already

    def _doc_blocks(self, size: int) -> list[tuple[int, int]]:
        n = len(self.doc_emb)
        return [(s, min(s + size, n)) for s in range(0, n, size)]

    def _block_norms2(self, start: int, end: int) -> float:
        block = np.asarray(self.doc_emb[start:end], dtype=np.float32)
        return float(np.einsum("ij,ij->i", block, block).max(initial=0.0))

    def _to_device(self, array: np.ndarray) -> Any:
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        return tensor.to(device=self.device, dtype=self._torch_dtype, non_blocking=False)

    def search(self, query_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(doc_idx int64, scores float32)`` of shape ``(queries, min(k, corpus))``, best first.

        Ties (equal float32 scores) go to the smaller document index.
        """
        query_emb = np.asarray(query_emb, dtype=np.float32)
        n, nq = len(self.doc_emb), len(query_emb)
        k = max(0, min(int(k), n))
        ids = np.zeros((nq, k), dtype=np.int64)
        scores = np.zeros((nq, k), dtype=np.float32)
        if k == 0 or nq == 0:
            return ids, scores
        pending = np.arange(nq)
        fetch = min(n, k + max(self.extra_candidates, k // 4))
        while len(pending):
            failed = []
            for start in range(0, len(pending), self.query_block):
                rows = pending[start:start + self.query_block]
                block_ids, block_scores, certified = self._search_block(query_emb[rows], k, fetch)
                ids[rows], scores[rows] = block_ids, block_scores
                failed.append(rows[~certified])
            pending = np.concatenate(failed)
            if len(pending):
                self.retries += len(pending)
                fetch = min(n, fetch * 4)
        return ids, scores

    def _search_block(self, queries: np.ndarray, k: int, fetch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Select ``fetch`` candidates on the device, re-score them exactly, certify the top ``k``."""
        import torch

        n, d = self.doc_emb.shape
        q = self._to_device(queries)
        tile_rows = max(fetch, self.tile_bytes // max(1, len(queries) * self._torch_dtype.itemsize))
        best_val = best_idx = None
        with torch.inference_mode():
            for start, end in self._doc_blocks(tile_rows):
                block = self._resident[start:end] if self._resident is not None else self._to_device(
                    self.doc_emb[start:end])
                tile = q @ block.T
                val, idx = torch.topk(tile, min(fetch, end - start), dim=1)
                idx += start
                if best_val is not None:
                    val, pick = torch.topk(torch.cat([best_val, val], dim=1), fetch, dim=1)
                    idx = torch.gather(torch.cat([best_idx, idx], dim=1), 1, pick)
                best_val, best_idx = val, idx
            assert best_val is not None and best_idx is not None
            lowest = best_val[:, -1].float().cpu().numpy()
            cand = best_idx.cpu().numpy()
        exact = self._rescore(queries, cand)
        order = np.lexsort((cand, -exact.astype(np.float64)), axis=1)[:, :k]
        top_ids = np.take_along_axis(cand, order, axis=1)
        top_scores = np.take_along_axis(exact, order, axis=1)
        if fetch >= n:
            return top_ids, top_scores, np.ones(len(queries), dtype=bool)
        eps = score_error_bound(self._torch_dtype, self.device, d)
        q_norms = np.linalg.norm(queries, axis=1)
        certified = top_scores[:, -1] > lowest + eps * q_norms * self._max_doc_norm
        return top_ids, top_scores, certified

    def _rescore(self, queries: np.ndarray, cand: np.ndarray, rows: int = 256) -> np.ndarray:
        """float32 inner products of each query with its candidates, from the host's float32 vectors."""
        out = np.empty(cand.shape, dtype=np.float32)
        for start in range(0, len(queries), rows):
            c = cand[start:start + rows]
            vectors = np.asarray(self.doc_emb[c.reshape(-1)], dtype=np.float32).reshape(*c.shape, -1)
            out[start:start + rows] = np.einsum("qd,qfd->qf", queries[start:start + rows], vectors)
        return out
