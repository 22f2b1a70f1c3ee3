"""ResNet-FPN backbone: outputs, freezing, and initialisation from ImageNet or a local file."""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import pytest
import torch
from torchvision.models import resnet18
from torchvision.models._api import WeightsEnum

from matchrcnn.config import ConfigError
from matchrcnn.modeling.backbone import build_resnet_fpn_backbone
from matchrcnn.modeling.weights import WeightsError


def random_resnet18_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = resnet18(weights=None)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
    return model.state_dict()


@pytest.fixture
def resnet18_file(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    state_dict = random_resnet18_state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(state_dict, path)
    return path, state_dict


def test_fpn_levels_and_channels() -> None:
    backbone = build_resnet_fpn_backbone(18, "FrozenBN", out_channels=32, freeze_at=2)
    features = backbone(torch.rand(1, 3, 64, 96))
    assert list(features) == ["0", "1", "2", "3", "pool"]
    assert [tuple(f.shape) for f in features.values()] == [
        (1, 32, 16, 24),
        (1, 32, 8, 12),
        (1, 32, 4, 6),
        (1, 32, 2, 3),
        (1, 32, 1, 2),
    ]


def test_freeze_at_follows_detectron2() -> None:
    body = build_resnet_fpn_backbone(18, "BN", out_channels=16, freeze_at=2).body
    trainable = {name.split(".")[0] for name, p in body.named_parameters() if p.requires_grad}
    assert trainable == {"layer2", "layer3", "layer4"}
    body = build_resnet_fpn_backbone(18, "BN", out_channels=16, freeze_at=0).body
    assert all(p.requires_grad for p in body.parameters())


@pytest.mark.parametrize("norm", ["FrozenBN", "BN", "GN"])
def test_local_state_dict_is_loaded(norm: str, resnet18_file) -> None:
    path, state_dict = resnet18_file
    body = build_resnet_fpn_backbone(18, norm, 16, 2, pretrained=str(path)).body
    assert torch.equal(body.conv1.weight, state_dict["conv1.weight"])
    assert torch.equal(body.layer4[1].conv2.weight, state_dict["layer4.1.conv2.weight"])
    assert torch.equal(body.layer3[0].bn1.weight, state_dict["layer3.0.bn1.weight"])
    if norm != "GN":
        assert torch.equal(body.bn1.running_mean, state_dict["bn1.running_mean"])


def test_file_of_another_network_is_refused(tmp_path: Path) -> None:
    state_dict = random_resnet18_state_dict()
    state_dict["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    del state_dict["layer4.1.conv2.weight"]
    path = tmp_path / "other.pth"
    torch.save(state_dict, path)
    with pytest.raises(WeightsError, match=r"other.pth") as error:
        build_resnet_fpn_backbone(18, "FrozenBN", 16, 2, pretrained=str(path))
    assert "layer4.1.conv2.weight" in str(error.value) and "conv1.weight" in str(error.value)


def test_missing_or_unreadable_file_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"MODEL\.BACKBONE\.PRETRAINED.*absent\.pth"):
        build_resnet_fpn_backbone(18, "FrozenBN", 16, 2, pretrained=str(tmp_path / "absent.pth"))
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(WeightsError, match=r"list.pth.*state_dict"):
        build_resnet_fpn_backbone(18, "FrozenBN", 16, 2, pretrained=str(path))


def test_imagenet_download_failure_says_how_to_use_a_local_file(monkeypatch) -> None:
    def offline(self, *args, **kwargs):
        raise URLError("network is unreachable")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    with pytest.raises(WeightsError) as error:
        build_resnet_fpn_backbone(18, "FrozenBN", 16, 2, pretrained="imagenet")
    message = str(error.value)
    assert "network is unreachable" in message
    assert "MODEL.BACKBONE.PRETRAINED /path/to/resnet18-" in message


def test_imagenet_weights_come_from_torchvision(monkeypatch) -> None:
    state_dict = random_resnet18_state_dict(seed=3)
    asked = []

    def cached(self, *args, **kwargs):
        asked.append(self.url)
        return state_dict

    monkeypatch.setattr(WeightsEnum, "get_state_dict", cached)
    body = build_resnet_fpn_backbone(18, "FrozenBN", 16, 2, pretrained="imagenet").body
    assert asked and "resnet18" in asked[0]
    assert torch.equal(body.layer1[0].conv1.weight, state_dict["layer1.0.conv1.weight"])


def test_bad_settings_name_their_key() -> None:
    with pytest.raises(ConfigError, match=r"MODEL.RESNETS.DEPTH"):
        build_resnet_fpn_backbone(26, "FrozenBN", 16, 2)
    with pytest.raises(ConfigError, match=r"MODEL.RESNETS.NORM"):
        build_resnet_fpn_backbone(18, "SyncBN", 16, 2)
    with pytest.raises(ConfigError, match=r"MODEL.BACKBONE.FREEZE_AT"):
        build_resnet_fpn_backbone(18, "BN", 16, 6)
