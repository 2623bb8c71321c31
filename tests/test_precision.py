"""Reduced-precision encoding, the default precision, and token-length batching, on the bundled MiniLM."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hnmine.engines.encoder as encoder_module
from hnmine.engines.encoder import Encoder, load_sentence_transformer, resolve_dtype
from hnmine.engines.precision import ReducedPrecisionLinear, can_pack_for_cpu

TEXTS = [
    "Aspirin lowers the risk of a second heart attack in adults with coronary disease.",
    "Vitamin D supplements did not change fracture rates in older women.",
    "Mitochondria produce most of the cell's ATP through oxidative phosphorylation.",
    "Short sleep is associated with higher blood pressure.",
    "BRCA1 mutations raise the lifetime risk of breast cancer.",
    "The river flooded the valley after three days of rain.",
    "Gut bacteria influence the response to immunotherapy in melanoma patients. " * 6,
    "Statins",
]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_bfloat16_runs_only_the_linear_layers_in_reduced_precision() -> None:
    model = load_sentence_transformer("all-MiniLM-L6-v2", "cpu", "bfloat16")
    transformer = model[0]
    assert not any(isinstance(m, nn.Linear) for m in transformer.modules())
    linears = [m for m in transformer.modules() if isinstance(m, ReducedPrecisionLinear)]
    # six layers x (query, key, value, attention output, intermediate, output), plus BERT's pooler
    assert len(linears) == 6 * 6 + 1
    assert all(m.weight.dtype == torch.bfloat16 for m in linears)
    norms = [m for m in transformer.modules() if isinstance(m, nn.LayerNorm)]
    assert norms and all(m.weight.dtype == torch.float32 for m in norms)
    # attention is fed float32 on CPU; the feed-forward GELU moved into its product
    to_attention = {n.rsplit(".", 1)[-1] for n, m in transformer.named_modules()
                    if isinstance(m, ReducedPrecisionLinear) and m.float32_output}
    assert to_attention == {"query", "key", "value"}
    assert sum(m.activation == "gelu" for m in linears) == 6
    assert all(isinstance(m.intermediate_act_fn, nn.Identity) for m in transformer.modules()
               if hasattr(m, "intermediate_act_fn"))
    assert model.encode(TEXTS[:2], convert_to_tensor=True).dtype == torch.float32


def test_bfloat16_embeddings_are_closer_to_float32_than_a_full_cast() -> None:
    reference = Encoder(dtype="float32", use_cache=False, show_progress=False).encode(TEXTS)
    mixed = Encoder(dtype="bfloat16", use_cache=False, show_progress=False).encode(TEXTS)
    full_cast = load_sentence_transformer("all-MiniLM-L6-v2", "cpu", "float32")
    full_cast = pickle.loads(pickle.dumps(full_cast)).to(torch.bfloat16)  # a copy: the cached model stays float32
    cast = full_cast.encode(TEXTS, convert_to_tensor=True, normalize_embeddings=True).float().numpy()
    assert mixed.dtype == np.float32
    assert _cosines(mixed, reference).min() > 0.9995
    assert np.abs(mixed - reference).max() < np.abs(cast - reference).max()


@pytest.mark.skipif(not can_pack_for_cpu(torch.bfloat16), reason="this CPU has no native bfloat16 products")
@pytest.mark.parametrize("activation", ["none", "gelu"])
def test_packed_cpu_product_matches_the_plain_one(activation: str) -> None:
    torch.manual_seed(0)
    layer = ReducedPrecisionLinear(nn.Linear(48, 96), torch.bfloat16)
    layer.activation = activation
    x = torch.randn(3, 7, 48)
    packed = layer(x)
    assert layer._packed is not None and packed.dtype == torch.bfloat16
    layer._packable = False  # the path a GPU, or a CPU without bf16 products, takes
    plain = layer(x)
    if activation == "none":
        torch.testing.assert_close(packed, plain, atol=0, rtol=0)
    else:  # fused GELU acts on the float32 accumulator, the plain path on the rounded product
        torch.testing.assert_close(packed.float(), plain.float(), atol=2e-2, rtol=1e-2)
        assert not torch.equal(packed.float(), F.linear(x.bfloat16(), layer.weight, layer.bias).float())
    layer._packable = True
    copy = pickle.loads(pickle.dumps(layer))  # what the multi-process pool does
    assert copy._packed is None
    torch.testing.assert_close(copy(x), packed, atol=0, rtol=0)


def test_a_caller_that_differentiates_gets_gradients() -> None:
    layer = ReducedPrecisionLinear(nn.Linear(16, 8), torch.bfloat16)
    layer.activation = "gelu"
    with torch.inference_mode():
        layer(torch.randn(2, 16))  # packs the weights inside inference mode, as encoding does
    x = torch.randn(2, 16, requires_grad=True)
    layer(x).float().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_reduced_precision_model_survives_pickling_for_the_multi_process_pool() -> None:
    model = load_sentence_transformer("all-MiniLM-L6-v2", "cpu", "bfloat16")
    copy = pickle.loads(pickle.dumps(model))
    a = model.encode(TEXTS[:3], convert_to_numpy=True)
    b = copy.encode(TEXTS[:3], convert_to_numpy=True)
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize(("native", "expected"), [(True, "bfloat16"), (False, "float32")])
def test_auto_precision_follows_the_cpu(monkeypatch: pytest.MonkeyPatch, native: bool, expected: str) -> None:
    monkeypatch.setattr(encoder_module, "_cpu_has_bf16", lambda: native)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_dtype("auto", None) == expected
    assert resolve_dtype("auto", "cpu") == expected
    assert resolve_dtype("float32", None) == "float32"


def test_the_cache_never_serves_one_precision_for_another(tmp_path) -> None:
    fp32 = Encoder(dtype="float32", cache_dir=str(tmp_path), show_progress=False)
    bf16 = Encoder(dtype="bfloat16", cache_dir=str(tmp_path), show_progress=False)
    a = fp32.encode(TEXTS)
    b = bf16.encode(TEXTS)
    assert fp32.cache_file(TEXTS, "", "float32") != bf16.cache_file(TEXTS, "", "bfloat16")
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(fp32.encode(TEXTS), a)  # each reads back its own entry
    np.testing.assert_array_equal(bf16.encode(TEXTS), b)


def test_token_length_batches_put_every_embedding_back_on_its_text() -> None:
    batched = Encoder(dtype="float32", batch_size=3, use_cache=False, show_progress=False).encode(TEXTS)
    model = load_sentence_transformer("all-MiniLM-L6-v2", None, "float32")
    one_by_one = np.stack([model.encode([t], normalize_embeddings=True)[0] for t in TEXTS])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_texts_longer_than_the_model_reads_are_counted() -> None:
    encoder = Encoder(dtype="float32", use_cache=False, show_progress=False)
    long_text = "protein folding " * 200  # ~400 tokens; the model reads 256
    encoder.encode([*TEXTS, long_text])
    assert encoder.truncated == 1
