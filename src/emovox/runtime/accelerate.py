"""One policy for running an encoder on ONNX Runtime, for training and inference alike."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from ..cache import default_cache_dir
from ..errors import ModelError
from . import onnx

#: ``auto``: ONNX Runtime when it is installed and the encoder can be exported, else PyTorch (int8 weights for
#: an encoder whose ``int8_by_default`` is set); ``torch``; ``onnx`` (an error when it cannot be done);
#: ``onnx-int8``: the export with int8 weights (ONNX Runtime's dynamic quantisation).
POLICIES = ("auto", "torch", "onnx", "onnx-int8")


def accelerate(encoder: Any, policy: str = "auto", threads: int | None = None, cache_dir: str | Path | None = None) -> str:
    """Run ``encoder`` on ONNX Runtime from now on, where ``policy`` allows; returns ``"onnx"``, ``"onnx-int8"`` or
    ``"torch"``.

    An encoder that can be exported has ``exportable`` true, an ``export_onnx(path)`` method, an ``identity()`` and a
    ``session`` attribute it runs when set. Its export is written once to ``<cache_dir>/onnx/<identity>.onnx``
    (default: the emovox cache) and reused; several tens of percent faster than PyTorch on a CPU. With ``auto``, a
    failed export is a warning and the encoder stays on PyTorch (same numbers).
    """
    if policy not in POLICIES:
        raise ModelError(f"engine must be one of {', '.join(POLICIES)}, not {policy!r}")
    if policy == "torch":
        encoder.session = None
        return "torch"
    if not getattr(encoder, "exportable", False):
        if policy == "onnx":
            raise ModelError(f"encoder {encoder.name!r} cannot run on ONNX Runtime")
        return "torch"
    if policy == "auto" and not onnx.available():
        return "torch"
    path = Path(cache_dir or default_cache_dir()) / "onnx" / f"{encoder.identity()}.onnx"
    int8 = policy == "onnx-int8" or (policy == "auto" and getattr(encoder, "int8_by_default", False))
    try:
        if not path.is_file():
            encoder.export_onnx(path)
        if int8:
            path = quantized(path)
        encoder.session = onnx.session(path, threads)
    except ModelError as err:
        if policy in ("onnx", "onnx-int8"):
            raise
        warnings.warn(f"{err}; encoder {encoder.name!r} runs on PyTorch", stacklevel=2)
        encoder.session = None
        return "torch"
    return "onnx-int8" if int8 else "onnx"


def quantized(path: Path) -> Path:
    """The int8-weight copy of the export ``path`` (``<name>.int8.onnx`` beside it, made once)."""
    out = path.with_name(path.name[: -len(".onnx")] + ".int8.onnx")
    return out if out.is_file() else onnx.quantize_int8(path, out)
