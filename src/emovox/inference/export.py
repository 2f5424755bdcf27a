"""Export a model folder to ONNX (optionally with int8 weights) for ONNX Runtime.

The whole classifier is exported: normalised images ``(batch, 3, H, W)`` ->
logits ``(batch, n_labels)``, with batch, height and width dynamic. Every
export is checked against PyTorch at two batch sizes and two image sizes
before it is put in place. Needs ``pip install 'emovox[onnx]'``.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .._version import __version__
from ..errors import ModelError
from ..model import EmotionClassifier, load_model
from ..runtime.onnx import quantize_int8, require
from .engine import (INPUT_NAME, INT8_FILE, META_LABELS, META_WEIGHTS, ONNX_FILE, OUTPUT_NAME, OnnxEngine, file_digest,
                     whole_model_exportable)

#: Largest accepted difference of softmax probabilities between ONNX (fp32) and PyTorch.
TOLERANCE = 1e-4
CHECK_BATCHES = (1, 5)


def check_sizes(image_size: int) -> tuple[int, int]:
    """The two image sides an export is checked at: the model's and a different one."""
    return image_size, 160 if image_size != 160 else 96


def compare(model: EmotionClassifier, path: str | Path, image_size: int, batches: tuple[int, ...] = CHECK_BATCHES,
            seed: int = 0, sizes: tuple[int, ...] | None = None) -> dict[tuple[int, int], tuple[float, float]]:
    """Run ``path`` and ``model`` on the same random images, for each batch size and both check sizes.

    Returns ``{(batch, side): (max |probability difference|, argmax agreement)}``
    with probabilities at the model's temperature.
    """
    engine = OnnxEngine(path)
    rng = np.random.default_rng(seed)
    out = {}
    for side in sizes or check_sizes(image_size):
        for batch in batches:
            x = rng.standard_normal((batch, 3, side, side)).astype(np.float32)
            with torch.inference_mode():
                ref = model(torch.from_numpy(x))
            got = torch.from_numpy(engine.logits(x))
            if got.shape != ref.shape or not torch.isfinite(got).all():
                raise ModelError(f"{path}: ONNX output of shape {tuple(got.shape)} (or not finite) for {batch} images "
                                 f"of {side}x{side}; PyTorch gives {tuple(ref.shape)}")
            t = model.temperature
            p_ref, p_got = torch.softmax(ref / t, 1), torch.softmax(got / t, 1)
            out[(batch, side)] = (float((p_ref - p_got).abs().max()), float((p_ref.argmax(1) == p_got.argmax(1)).float().mean()))
    return out


def _add_metadata(path: Path, model: EmotionClassifier, model_dir: Path, extra: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    meta = {
        META_LABELS: json.dumps(model.labels),
        META_WEIGHTS: file_digest(model_dir),
        "emovox.backbone": model.backbone,
        "emovox.temperature": repr(model.temperature),
        "emovox.version": __version__,
        **extra,
    }
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def export_onnx(
    model_dir: str | Path,
    out_path: str | Path | None = None,
    *,
    opset: int = 17,
    quantize: bool = False,
    overwrite: bool = False,
    dynamo: bool = False,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Export the model in ``model_dir`` to ONNX; returns the path of the fp32 file.

    ``out_path`` defaults to ``<model_dir>/model.onnx``. With ``quantize`` an
    int8-weight copy is written beside it (``model.int8.onnx``, or
    ``<name>.int8.onnx``) by ONNX Runtime's dynamic quantisation. Files are
    checked against PyTorch before they replace anything, and existing files
    are kept unless ``overwrite``. ``dynamo`` selects torch's
    ``torch.export``-based exporter (needs ``onnxscript``; much slower); the
    default is the TorchScript exporter.
    """
    require("onnx")
    require("onnxruntime")
    if dynamo:
        require("onnxscript")
    log = log or (lambda msg: None)
    model_dir = Path(model_dir).expanduser()
    model, features, _ = load_model(model_dir)
    if not whole_model_exportable(model):
        raise ModelError(f"{model_dir}: a model of the encoders {model.backbone!r} needs no 'emovox export', which writes "
                         "a whole model of one image CNN as one ONNX network. Encoders that run faster on ONNX Runtime "
                         "(speech transformers) are exported on first use, checked against PyTorch and cached under "
                         "$EMOVOX_CACHE/onnx/; heads run in PyTorch, as do openSMILE's acoustic functionals; ONNX export "
                         "covers neural encoders only")
    out = Path(out_path).expanduser() if out_path is not None else model_dir / ONNX_FILE
    if out.suffix != ".onnx":
        raise ModelError(f"{out}: the ONNX file name must end in .onnx")
    int8 = out.with_name(INT8_FILE if out.name == ONNX_FILE else out.name[: -len(".onnx")] + ".int8.onnx")
    targets = [out, int8] if quantize else [out]
    for target in targets:
        if target.exists() and not overwrite:
            raise ModelError(f"{target}: already exists; pass overwrite=True (emovox export --overwrite) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    size = features.image_size
    tmp = Path(tempfile.mkdtemp(prefix=".emovox-export-", dir=out.parent))
    try:
        fp32 = tmp / ONNX_FILE
        sizes = check_sizes(size)
        try:
            _export(model, fp32, size, opset, dynamo)
        except ModelError as err:
            if "adaptive" not in str(err):
                raise
            # VGG16's adaptive pooling cannot be exported for a variable image size; emovox
            # always feeds image_size x image_size, so a fixed side (dynamic batch) serves.
            _export(model, fp32, size, opset, dynamo, spatial=False)
            sizes = (size,)
            log(f"exported for {size}x{size} images only (adaptive pooling cannot take a variable size)")
        _add_metadata(fp32, model, model_dir, {"emovox.image_size": str(size), "emovox.weights": "float32"})
        diffs = compare(model, fp32, size, sizes=sizes)
        worst = max(d for d, _ in diffs.values())
        if not worst < TOLERANCE:
            bad = ", ".join(f"batch {b} at {s}x{s}: {d:.2e}" for (b, s), (d, _) in diffs.items() if not d < TOLERANCE)
            raise ModelError(f"{out}: the ONNX export disagrees with PyTorch (max probability difference {bad}; "
                             f"tolerance {TOLERANCE:g}); nothing was written")
        log(f"checked against PyTorch at batch sizes {', '.join(map(str, CHECK_BATCHES))} and image sizes "
            f"{' and '.join(map(str, sizes))}: max probability difference {worst:.1e}")
        written = [(fp32, out)]
        if quantize:
            q = tmp / INT8_FILE
            quantize_int8(fp32, q)
            _add_metadata(q, model, model_dir, {"emovox.image_size": str(size), "emovox.weights": "int8 (dynamic quantisation)"})
            agree = compare(model, q, size, sizes=sizes)
            rate = float(np.mean([a for _, a in agree.values()]))
            log(f"int8 model runs at both image sizes; argmax agrees with PyTorch on {rate:.0%} of random check images")
            written.append((q, int8))
        for src, dst in written:
            os.replace(src, dst)
            log(f"wrote {dst} ({dst.stat().st_size / 2**20:.1f} MiB)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _export(model: torch.nn.Module, path: Path, size: int, opset: int, dynamo: bool, name: str | None = None,
            spatial: bool = True) -> None:
    example = (torch.zeros(2, 3, size, size),)
    model = model.eval()
    name = name or getattr(model, "backbone", type(model).__name__)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice, tracer notes
            if dynamo:
                from torch.export import Dim

                shapes = {"images": {0: Dim("batch", min=1), 2: Dim("height", min=32), 3: Dim("width", min=32)}}
                torch.onnx.export(model, example, str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                  opset_version=opset, dynamo=True, dynamic_shapes=shapes, external_data=False,
                                  verbose=False)
            else:
                axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"} if spatial else {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
                torch.onnx.export(model, example, str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                  opset_version=opset, dynamo=False, dynamic_axes=axes, do_constant_folding=True)
    except Exception as err:
        raise ModelError(f"{path.name}: torch.onnx.export failed for backbone {name!r} at opset {opset} "
                         f"({type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''})") from None
    if not path.is_file():
        raise ModelError(f"{path}: torch.onnx.export wrote nothing")
