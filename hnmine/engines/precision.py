"""Reduced precision where it is cheap, float32 where it is not.

Casting a whole bi-encoder to bfloat16 makes CPU encoding about twice as fast, but it rounds the residual
stream, the softmax and the mean pooling to 8 bits of mantissa. On SciFact that moved 1.2 % of each query's
top-50 neighbours, more than the 1 % a miner may silently change. Nearly all of the arithmetic (and so of the
speed-up) is in the linear layers, so only those are converted here: their weights are stored in
bfloat16/float16 and their inputs cast on entry. LayerNorm, the residual stream and the pooling stay float32
through PyTorch's type promotion.

Three CPU-only refinements, each measured on one 32 × 256-token MiniLM batch (``benchmarks/dtype.py`` has the
end-to-end figures):

* The weights are pre-packed once into oneDNN's blocked layout (what ``torch.compile``'s CPU freezing does), so
  each product skips the repacking that a plain ``F.linear`` call repeats: 20 % less time in the linear layers.
* The query, key and value projections hand float32 to attention. PyTorch's CPU flash-attention kernel is
  faster in float32 than in bfloat16 (31 vs 42 ms per layer here), and float32 scores are also more exact.
* BERT's feed-forward GELU runs as the packed product's fused post-op, on the float32 accumulator, instead of as
  a separate pass over a 1536-wide bfloat16 tensor.

On a GPU none of these apply: the products go through ``F.linear`` and attention stays in reduced precision,
where the GPU's kernels are fastest.

This module imports torch at the top, so it is imported only when a model is actually loaded.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: Names of the projections that feed attention in the common encoder families (BERT, MPNet, T5, fused QKV).
ATTENTION_INPUT_NAMES = frozenset({"query", "key", "value", "q_proj", "k_proj", "v_proj", "q", "k", "v",
                                   "qkv", "Wqkv", "query_key_value"})


def can_pack_for_cpu(dtype: torch.dtype) -> bool:
    """oneDNN packs bfloat16 only on CPUs with native bf16 dot products, float16 only with native fp16."""
    mkldnn = torch.ops.mkldnn
    if not (torch.backends.mkldnn.is_available() and hasattr(mkldnn, "_linear_pointwise")):
        return False
    try:
        if dtype == torch.bfloat16:
            return bool(mkldnn._is_mkldnn_bf16_supported())
        if dtype == torch.float16:
            return bool(mkldnn._is_mkldnn_fp16_supported())
    except (AttributeError, RuntimeError):
        return False
    return False


class ReducedPrecisionLinear(nn.Module):
    """``nn.Linear`` with its weights stored, and its product computed, in a reduced-precision dtype.

    The output stays in that dtype, so a following linear layer takes it without a cast and an addition to a
    float32 tensor (the residual stream) promotes it back to float32; on CPU, ``float32_output`` hands
    float32 to attention instead. ``activation="gelu"`` applies exact GELU to the product, fused on CPU.
    """

    def __init__(self, linear: nn.Linear, dtype: torch.dtype, float32_output: bool = False) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = nn.Parameter(linear.weight.detach().to(dtype), requires_grad=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().to(dtype),
                                                                  requires_grad=False)
        self.float32_output = float32_output
        self.activation = "none"
        self._packed: torch.Tensor | None = None  # oneDNN's layout, built on first CPU use; not pickled
        self._packable = can_pack_for_cpu(dtype)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_packed"] = None  # an opaque oneDNN tensor has no storage to pickle
        return state

    def _packed_weight(self) -> torch.Tensor | None:
        if not (self._packable and self.weight.is_cpu):
            return None
        if self._packed is None:
            try:
                with torch.inference_mode(False):  # a normal tensor, usable in and out of inference mode
                    self._packed = torch.ops.mkldnn._reorder_linear_weight(self.weight, None)
            except RuntimeError:  # a oneDNN build that claims support but cannot pack: use the plain product
                self._packable = False
                return None
        return self._packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x if x.dtype == self.weight.dtype else x.to(self.weight.dtype)
        # oneDNN's fused product has no backward: a caller that differentiates gets the plain one
        needs_grad = torch.is_grad_enabled() and x.requires_grad
        packed = self._packed_weight() if x.is_cpu and not needs_grad else None
        if packed is not None:
            gelu = self.activation == "gelu"
            out = torch.ops.mkldnn._linear_pointwise(x, packed, self.bias, "gelu" if gelu else "none", [],
                                                     "none" if gelu else "")
        else:
            out = F.linear(x, self.weight, self.bias)
            out = F.gelu(out) if self.activation == "gelu" else out
        return out.float() if self.float32_output and out.is_cpu else out


def _token_embeddings_to_float32(module: nn.Module, args: Any, output: dict[str, Any]) -> dict[str, Any]:
    """Mean pooling sums up to hundreds of token vectors; in bfloat16 that sum loses the last digits."""
    if isinstance(output, dict) and torch.is_tensor(output.get("token_embeddings")):
        output["token_embeddings"] = output["token_embeddings"].float()
    return output


def _swap_linear_layers(module: nn.Module, dtype: torch.dtype) -> int:
    swapped = 0
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, ReducedPrecisionLinear(child, dtype, float32_output=name in ATTENTION_INPUT_NAMES))
            swapped += 1
        else:
            swapped += _swap_linear_layers(child, dtype)
    return swapped


def _is_exact_gelu(module: nn.Module) -> bool:
    if isinstance(module, nn.GELU):
        return module.approximate == "none"
    return type(module).__name__ == "GELUActivation" and getattr(module, "act", None) is F.gelu


def _fuse_feed_forward_gelu(module: nn.Module) -> int:
    """BERT's feed-forward block is ``dense`` then ``intermediate_act_fn``; fold the GELU into the product."""
    fused = 0
    for child in module.modules():
        dense, act = getattr(child, "dense", None), getattr(child, "intermediate_act_fn", None)
        if isinstance(dense, ReducedPrecisionLinear) and isinstance(act, nn.Module) and _is_exact_gelu(act):
            dense.activation = "gelu"
            child.intermediate_act_fn = nn.Identity()
            fused += 1
    return fused


def apply_reduced_precision(model: Any, dtype: str) -> Any:
    """Run the token encoder's linear layers of a SentenceTransformer in ``dtype``; the rest stays float32.

    Only the first module (the transformer that yields token embeddings) is changed: dense heads after the
    pooling, if a model has them, act on the final vector and keep full precision. A model whose first module
    has no linear layers is cast as a whole, since there is nothing cheaper to do.
    """
    if dtype == "float32":
        return model
    torch_dtype = getattr(torch, dtype)
    first = model[0] if len(model) else model
    if _swap_linear_layers(first, torch_dtype) == 0:
        return model.to(torch_dtype)
    _fuse_feed_forward_gelu(first)
    first.register_forward_hook(_token_embeddings_to_float32)
    return model
