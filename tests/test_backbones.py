import pytest
import torch

from emovox.encoders.image import BACKBONES as REGISTRY, build_backbone, imagenet_classifier, read_state_dict
from emovox.errors import ModelError
from emovox.model import EmotionClassifier

EGYPTIAN_CAT, TABBY, TIGER_CAT = 285, 281, 282
ESPRESSO = 967


def _photo(name: str, spec) -> torch.Tensor:
    skimage_data = pytest.importorskip("skimage.data")
    img = torch.from_numpy(getattr(skimage_data, name)()).permute(2, 0, 1).float() / 255
    img = torch.nn.functional.interpolate(img[None], size=(224, 224), mode="bilinear", antialias=True)
    return (img - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1)


def test_registry_lists_the_recipe_backbones():
    assert {"vgg16", "efficientnet_lite0"} <= set(REGISTRY)
    with pytest.raises(ModelError, match="unknown backbone"):
        build_backbone("resnet9000", 3)


def test_efficientnet_lite0_real_imagenet_weights_recognise_photos():
    net, spec = imagenet_classifier("efficientnet_lite0")
    with torch.inference_mode():
        cat = net(_photo("chelsea", spec)).softmax(1)[0]
        coffee = net(_photo("coffee", spec)).softmax(1)[0]
    assert int(cat.argmax()) in (EGYPTIAN_CAT, TABBY, TIGER_CAT)
    assert float(cat[[EGYPTIAN_CAT, TABBY, TIGER_CAT]].sum()) > 0.8
    assert int(coffee.argmax()) == ESPRESSO


def test_efficientnet_random_init_does_not_recognise_photos():
    net, spec = imagenet_classifier("efficientnet_lite0", weights=None)
    with torch.inference_mode():
        cat = net.eval()(_photo("chelsea", spec)).softmax(1)[0]
    assert float(cat[[EGYPTIAN_CAT, TABBY, TIGER_CAT]].sum()) < 0.1


def test_local_weights_file_safetensors_and_pth(tmp_path):
    from safetensors.torch import save_file

    src, _ = imagenet_classifier("efficientnet_lite0")
    sd = {k: v.contiguous() for k, v in src.state_dict().items()}
    save_file(sd, str(tmp_path / "lite0.safetensors"))
    torch.save(sd, tmp_path / "lite0.pth")
    for f in ("lite0.safetensors", "lite0.pth"):
        net, _ = imagenet_classifier("efficientnet_lite0", tmp_path / f)
        assert torch.equal(net.state_dict()["conv_stem.weight"], sd["conv_stem.weight"])


def test_vgg16_loads_a_local_weights_file_and_replaces_last_layer(tmp_path):
    import torchvision

    torch.manual_seed(0)
    ref = torchvision.models.vgg16(weights=None)
    torch.save(ref.state_dict(), tmp_path / "vgg16.pth")
    model = EmotionClassifier("vgg16", ["angry", "happy", "sad"], weights=tmp_path / "vgg16.pth")
    assert torch.equal(model.encoders[0].body[0][0].weight, ref.features[0].weight)
    assert torch.equal(model.head[0].weight, ref.classifier[0].weight)
    assert model.head[-1].out_features == 3
    # the recipe: convolutional layers frozen, the classifier trains
    assert not any(p.requires_grad for p in model.encoders[0].body.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    with torch.inference_mode():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)


def test_vgg16_imagenet_download_failure_says_what_to_do(monkeypatch):
    import torchvision

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.models.VGG16_Weights.IMAGENET1K_V1.__class__, "get_state_dict", offline)
    with pytest.raises(ModelError, match="--weights FILE"):
        build_backbone("vgg16", 7, "imagenet")


def test_bad_weights_files_are_named(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        read_state_dict(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="junk.pth"):
        read_state_dict(tmp_path / "junk.pth")
    torch.save({"x": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ModelError, match="other.pth"):
        build_backbone("vgg16", 3, tmp_path / "other.pth")


@pytest.mark.parametrize("finetune,body_trains", [("none", 0.0), ("last", None), ("all", 1.0)])
def test_finetune_policies(finetune, body_trains):
    model = EmotionClassifier("efficientnet_lite0", ["a", "b"], weights=None, finetune=finetune)
    flags = [p.requires_grad for p in model.encoders[0].body.parameters()]
    share = sum(flags) / len(flags)
    if body_trains is None:
        assert 0 < share < 1 and flags[-1] and not flags[0]
    else:
        assert share == body_trains
    model.train()
    assert model.encoders[0].body.training == (finetune != "none")


def test_stage_pooled_lite0_keeps_the_final_embedding_and_adds_stage_statistics(tmp_path):
    """The robust recipe's backbone: the plain Lite0 embedding first, then mean/max of stages 3-6."""
    plain = EmotionClassifier("efficientnet_lite0", ["a", "b"]).eval()
    staged = EmotionClassifier("efficientnet_lite0_stages", ["a", "b"]).eval()
    x = torch.randn(2, 3, 128, 160)
    with torch.inference_mode():
        e_plain, e_staged = plain.encoders[0](x), staged.encoders[0](x)
    assert staged.encoders[0].dim == e_staged.shape[1] == 1280 + 2 * (80 + 112 + 192 + 320)
    torch.testing.assert_close(e_staged[:, :1280], e_plain)  # same ImageNet weights, same final embedding
    means, maxes = e_staged[:, 1280:1360], e_staged[:, 1360:1440]  # stage 3: 80 channels
    assert (maxes >= means).all()
    with pytest.raises(ModelError, match="no last-blocks split"):
        EmotionClassifier("efficientnet_lite0_stages", ["a", "b"], finetune="last")
    # Its body exports to ONNX for the fast frozen pass.
    pytest.importorskip("onnxruntime")
    from emovox.inference.engine import OnnxEngine
    engine = OnnxEngine(staged.encoders[0].export_onnx(tmp_path / "body.onnx"))
    x = torch.randn(3, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(torch.from_numpy(engine.logits(x.numpy())), staged.encoders[0](x), atol=1e-3, rtol=1e-3)
