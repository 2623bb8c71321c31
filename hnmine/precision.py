"""Reduced precision where it is cheap, float32 where it is not.

Casting a whole bi-encoder to bfloat16 makes CPU encoding about twice as fast, but it rounds the residual
stream, the softmax and the mean pooling to 8 bits of mantissa. On SciFact that moved 1.2 % of each query's
top-50 neighbours, more than the 1 % a miner may silently change. Nearly all of the arithmetic (and so of the
speed-up) is in the linear layers, so only those are converted here: their weights are stored in
bfloat16/float16 and their inputs cast on entry. Attention and GELU take the linear layers' outputs and so run in
reduced precision too, while LayerNorm, the residual stream and the pooling stay float32 through PyTorch's type
promotion. The measured cost is the same speed as the full cast at under half the
neighbour changes (``benchmarks/dtype.py``).

This module imports torch at the top, so it is imported only when a model is actually loaded.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class ReducedPrecisionLinear(nn.Module):
    """``nn.Linear`` with its weights stored, and its product computed, in a reduced-precision dtype.

    The output stays in that dtype: a following linear layer takes it without a cast, and an addition to a
    float32 tensor (the residual stream) promotes it back to float32.
    """

    def __init__(self, linear: nn.Linear, dtype: torch.dtype) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = nn.Parameter(linear.weight.detach().to(dtype), requires_grad=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().to(dtype),
                                                                  requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x if x.dtype == self.weight.dtype else x.to(self.weight.dtype), self.weight, self.bias)


def _token_embeddings_to_float32(module: nn.Module, args: Any, output: dict[str, Any]) -> dict[str, Any]:
    """Mean pooling sums up to hundreds of token vectors; in bfloat16 that sum loses the last digits."""
    if isinstance(output, dict) and torch.is_tensor(output.get("token_embeddings")):
        output["token_embeddings"] = output["token_embeddings"].float()
    return output


def _swap_linear_layers(module: nn.Module, dtype: torch.dtype) -> int:
    swapped = 0
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, ReducedPrecisionLinear(child, dtype))
            swapped += 1
        else:
            swapped += _swap_linear_layers(child, dtype)
    return swapped


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
    first.register_forward_hook(_token_embeddings_to_float32)
    return model
