"""The one shape of every model class (the CLIP towers, OCR, the reranking LLM, the faces), like Immich's
``InferenceModel``: constructing one reads no weights; ``load()`` does (or the first use does, lazily);
``close()`` frees them. The engine holds its models as :class:`Model` and closes them the same way.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Model(Protocol):
    """A model behind a small class, loaded lazily and freed by ``close()``."""

    @property
    def loaded(self) -> bool:
        """Whether its weights are in memory now."""
        ...

    def load(self) -> object:
        """Read the weights now (instead of on first use); raises a RetllmError saying what is wrong."""
        ...

    def close(self) -> None:
        """Free the weights (safe to call twice)."""
        ...
