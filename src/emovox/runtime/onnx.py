"""ONNX Runtime sessions and checked exports (a leaf: imports nothing else of emovox but its errors).

Every export is compared with PyTorch on example inputs before it is moved into
place (atomically), so a file found on disk always computes what the network does.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import threading
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ModelError


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def available() -> bool:
    """True when ``onnxruntime`` can be imported."""
    try:
        importlib.import_module("onnxruntime")
    except ImportError:
        return False
    return True


def require(module: str) -> None:
    """:class:`ModelError` naming the extra to install when ``module`` (onnx, onnxruntime, onnxscript) is missing."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise ModelError(f"exporting to ONNX needs the package {module}: pip install 'emovox[onnx]'") from None


def session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session for ``path``: ``threads`` intra-op threads (default: the usable cores), all graph
    optimisations, idle threads sleeping. Raises :class:`ModelError` when onnxruntime is missing or the file unusable."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError("the ONNX engine needs onnxruntime: pip install 'emovox[onnx]'") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads)) if threads else usable_cores()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only
    # Idle worker threads sleep instead of spinning: no CPU stolen from PyTorch or other work between calls.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as err:
        raise ModelError(f"{path}: not a usable ONNX model ({str(err).strip().splitlines()[0]})") from None


def export_checked(module, path: str | Path, example, checks: Sequence, *, input_name: str, output_name: str,
                   dynamic_axes: dict[str, dict[int, str]], name: str, opset: int = 17, rtol: float = 1e-3) -> Path:
    """Export ``module`` (one tensor in, one out) to ``path`` with the TorchScript exporter, traced on ``example``.

    The export is run on every tensor of ``checks`` and compared with PyTorch (relative error below ``rtol`` of the
    largest output) before it is moved into place; :class:`ModelError` (naming ``name``) otherwise.
    """
    import torch

    require("onnx")
    require("onnxruntime")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        out = Path(tmp) / path.name
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice, tracer notes
                torch.onnx.export(module, (example,), str(out), input_names=[input_name], output_names=[output_name],
                                  dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False, do_constant_folding=True)
        except Exception as err:
            text = str(err).strip()
            raise ModelError(f"torch.onnx.export failed for {name} ({type(err).__name__}: "
                             f"{text.splitlines()[0] if text else ''})") from None
        sess = session(out)
        for x in checks:
            with torch.inference_mode():
                ref = module(x).numpy()
            got = sess.run(None, {input_name: x.numpy()})[0]
            if got.shape != ref.shape or not np.allclose(got, ref, rtol=rtol, atol=rtol * float(np.abs(ref).max())):
                raise ModelError(f"ONNX export of {name} disagrees with PyTorch on an input of shape {tuple(x.shape)}")
        os.replace(out, path)  # atomic: a concurrent reader never sees half a file
    return path


#: One quantisation at a time: it runs in a temporary working directory (a process-wide setting).
_QUANTIZING = threading.Lock()


def quantize_int8(src: str | Path, dst: str | Path) -> Path:
    """``dst``: ``src`` with int8 weights (per tensor, signed) by ONNX Runtime's dynamic quantisation, after its
    pre-processing; written atomically."""
    import logging

    require("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src).resolve(), Path(dst).resolve()
    dst.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    was = root.disabled
    root.disabled = True  # quantisation warns through the root logger
    try:
        # The pre-processing writes scratch files into the working directory: give it a temporary one.
        with _QUANTIZING, tempfile.TemporaryDirectory(dir=dst.parent) as tmp, contextlib.chdir(tmp):
            pre, out = Path(tmp) / "pre.onnx", Path(tmp) / dst.name
            try:
                quant_pre_process(str(src), str(pre))
            except Exception:  # transformers' dynamic shapes defeat the symbolic pass: the plain one suffices
                quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8)
            os.replace(out, dst)
    except ModelError:
        raise
    except Exception as err:
        raise ModelError(f"{src.name}: int8 quantisation failed ({type(err).__name__}: {err})") from None
    finally:
        root.disabled = was
    return dst
