"""Checkpoints that rebuild their model: every model class records its constructor's arguments.

A model's `model_args` (a plain dict: ints, floats, strings, lists) is saved beside its state_dict, and
`Model.from_checkpoint(payload)` calls `Model(**payload["model_args"])` and loads the weights (nanoGPT's
`model_args` -> `GPTConfig(**model_args)`). No reader hand-lists a model's sizes, so a new constructor
argument (a head count, a hidden width) is carried by every checkpoint written after it exists.

Checkpoints written before `model_args` hold a few sizes as top-level keys; each class names them in
`LEGACY_ARGS` (key -> default when absent) and the missing ones take the constructor's defaults, which is
what those checkpoints were trained with.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn


class SavesArgs:
    """Mixin for an `nn.Module` whose __init__ stores `self.model_args` (its own keyword arguments)."""

    model_args: dict[str, Any]
    # Top-level keys of checkpoints written before model_args: name -> default (None: required).
    LEGACY_ARGS: ClassVar[dict[str, Any]] = {}

    def checkpoint_payload(self) -> dict[str, Any]:
        """{"state_dict", "model_args"}: what `from_checkpoint` needs (callers add their own keys)."""
        assert isinstance(self, nn.Module)
        return {"state_dict": self.state_dict(), "model_args": dict(self.model_args)}

    @classmethod
    def args_of(cls, payload: dict[str, Any]) -> dict[str, Any]:
        """The constructor arguments a checkpoint payload records (old checkpoints: their top-level sizes)."""
        if "model_args" in payload:
            return dict(payload["model_args"])
        missing = [k for k, default in cls.LEGACY_ARGS.items() if default is None and k not in payload]
        if missing or not cls.LEGACY_ARGS:
            raise ValueError(f"a {cls.__name__} checkpoint needs 'model_args' (or, written before them, the keys "
                             f"{sorted(cls.LEGACY_ARGS)}); missing {missing or ['model_args']}")
        return {k: payload.get(k, default) for k, default in cls.LEGACY_ARGS.items()}

    @classmethod
    def from_checkpoint(cls, payload: dict[str, Any]):
        """The model a checkpoint payload describes, its weights loaded (strictly), in training mode."""
        model = cls(**cls.args_of(payload))
        model.load_state_dict(payload["state_dict"])
        return model
