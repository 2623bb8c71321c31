"""Text generators for synthetic hard negatives: a local causal LM, or any OpenAI-compatible server.

Both answer the same call, ``generate(requests) -> texts``, one text per request in order, so the stage that
verifies and mixes synthetic negatives never asks which one it has. Each request carries its own seed: a
sample depends on its prompt, its sample number and ``--seed``, not on which other prompts share its batch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from hnmine.errors import InputError


class GenerationError(InputError):
    """The generator could not be used (server unreachable, garbage answers, model not loadable): one line."""


@dataclass(frozen=True)
class Sampling:
    """Sampling settings, the same for both generators; part of the cache key and of the manifest."""

    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 256

    def __post_init__(self) -> None:
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise InputError(f"--temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise InputError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise InputError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    seed: int


class Generator(Protocol):
    def identity(self) -> str:
        """What makes its answers differ (weights or server + model name): the cache key's generator part."""

    def check(self) -> None:
        """Fail early, in one line, when the generator cannot be used; before any expensive work."""

    def generate(self, requests: list[GenerationRequest]) -> list[str]: ...

    def describe(self) -> dict[str, Any]:
        """For the run manifest (never an API key)."""


def build_generator(model: str | None, url: str | None, sampling: Sampling, *, device: str | None = None,
                    batch_size: int = 8, concurrency: int = 4, timeout: float = 60.0,
                    max_retries: int = 3) -> Generator:
    """``model`` alone: a local Hugging Face causal LM; ``url`` + ``model``: an OpenAI-compatible server."""
    if not model:
        raise InputError("synthetic negatives need a generator: --generator NAME_OR_PATH (a local causal LM), or "
                         "--generator-url URL with --generator-model NAME")
    if url:
        from hnmine.generators.openai_server import OpenAICompatibleGenerator

        return OpenAICompatibleGenerator(url=url, model=model, sampling=sampling, concurrency=concurrency,
                                         timeout=timeout, max_retries=max_retries)
    from hnmine.generators.local_lm import LocalCausalLM

    return LocalCausalLM(model=model, sampling=sampling, device=device, batch_size=batch_size)
