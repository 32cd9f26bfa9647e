"""Module specs: how to rebuild a model from a checkpoint without the config that built it.

A spec is `{"class": "jepa.models.<module>.<Class>", "kwargs": {...}}`, read from a module's `init_kwargs` (its
constructor arguments, recorded by the module itself); arguments that are modules become nested specs. Only classes
under `jepa.models` are rebuilt, so a checkpoint can never name arbitrary code to run.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

ALLOWED_PREFIX = "jepa.models."


def module_spec(module: nn.Module) -> dict[str, Any]:
    """The spec of `module` (its class path and `init_kwargs`, nested modules as specs)."""
    cls = type(module)
    if not hasattr(module, "init_kwargs"):
        raise TypeError(f"{cls.__name__} has no init_kwargs: it cannot be rebuilt from a checkpoint")
    kwargs = {k: module_spec(v) if isinstance(v, nn.Module) else v for k, v in module.init_kwargs.items()}
    return {"class": f"{cls.__module__}.{cls.__qualname__}", "kwargs": kwargs}


def build_module(spec: dict[str, Any]) -> nn.Module:
    """The module a spec describes, with fresh weights (load its state dict next)."""
    path = spec.get("class", "")
    if not path.startswith(ALLOWED_PREFIX):
        raise ValueError(f"refusing to build {path!r}: only classes under {ALLOWED_PREFIX}* are rebuilt from specs")
    module_name, _, class_name = path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    kwargs = {k: build_module(v) if _is_spec(v) else v for k, v in spec["kwargs"].items()}
    return cls(**kwargs)


def _is_spec(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"class", "kwargs"}
