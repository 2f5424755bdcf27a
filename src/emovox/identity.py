"""The one way emovox names what something is: a SHA-256 digest of its content.

Files (their bytes), weights (every tensor's name, shape and float32 values),
settings (canonical JSON) and plain text all go through :func:`digest`, so a
cache key, a model folder's integrity check and an exported file's link to its
weights are computed alike.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def digest(*parts: Any, length: int | None = None) -> str:
    """Hex SHA-256 over ``parts`` in order (the first ``length`` characters when given).

    Each part is one of: a :class:`~pathlib.Path` (the file's bytes), ``bytes``, ``str`` (UTF-8 text), a mapping of
    names to tensors or arrays (a state dict: name, shape and float32 values of each, in name order), or any other
    JSON value (dicts, lists, numbers; canonical JSON with sorted keys).
    """
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            with open(part, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        elif isinstance(part, bytes):
            h.update(part)
        elif isinstance(part, str):
            h.update(part.encode())
        elif isinstance(part, Mapping) and part and all(hasattr(v, "shape") for v in part.values()):
            for key, value in sorted(part.items()):
                h.update(str(key).encode())
                h.update(str(tuple(value.shape)).encode())
                h.update(_float32_bytes(value))
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    out = h.hexdigest()
    return out[:length] if length else out


def _float32_bytes(value: Any) -> bytes:
    if hasattr(value, "detach"):  # a torch tensor
        import torch

        return value.detach().to(torch.float32).contiguous().cpu().numpy().tobytes()
    import numpy as np

    return np.ascontiguousarray(value, dtype=np.float32).tobytes()
