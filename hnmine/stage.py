"""What a stage is, and how stages are named in pipeline files.

A stage is a plain dataclass with one method, ``apply(batch) -> batch``. Its dataclass fields are its
options, which is all a pipeline file needs to rebuild it, so adding a strategy is one new module with
one new class registered here.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Protocol, runtime_checkable

from hnmine.candidates import CandidateBatch
from hnmine.data import MiningData


@runtime_checkable
class Stage(Protocol):
    kind: ClassVar[str]

    def apply(self, batch: CandidateBatch) -> CandidateBatch: ...


def prepare(stage: Stage, data: MiningData) -> None:
    """Stages with a whole-corpus setup (an index, corpus embeddings) do it here, once, before any chunk."""
    hook = getattr(stage, "prepare", None)
    if hook is not None:
        hook(data)


def stage_options(stage: Any) -> dict[str, Any]:
    """A stage's options as plain values, nested stages included, for pipeline files and run manifests."""
    options: dict[str, Any] = {}
    for f in dataclasses.fields(stage):
        if not f.init or f.name.startswith("_") or f.metadata.get("config") is False:
            continue
        value = getattr(stage, f.name)
        if dataclasses.is_dataclass(value):
            value = {"kind": value.kind, **stage_options(value)}
        options[f.name] = value
    return options
