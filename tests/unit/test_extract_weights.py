"""Backbone weights: every public key set loads strictly (random weights saved under its names, no download),
a mismatched file is one error listing the missing and unexpected keys, and the models give D-wide features."""

from __future__ import annotations

import pytest
import torch

from gsmoe_lib.extract.weights import KEY_SETS, WeightsError, load_backbone, random_weights, read_state_dict


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    out = {}
    for ks in KEY_SETS.values():
        out[ks.name] = root / f"{ks.name}.pt"
        torch.save(random_weights(ks.backbone, ks.name, seed=1), out[ks.name])
    return out


def test_key_sets_use_the_public_names(files):
    piergiaj, hassony2, tushar = (set(read_state_dict(files[n])) for n in ("piergiaj", "hassony2", "tushar-n"))
    assert {"Conv3d_1a_7x7.conv3d.weight", "Conv3d_1a_7x7.bn.running_var", "Mixed_5c.b3b.bn.weight",
            "logits.conv3d.weight", "logits.conv3d.bias"} <= piergiaj
    assert {"conv3d_1a_7x7.conv3d.weight", "conv3d_1a_7x7.batch3d.running_mean", "mixed_5c.branch_0.conv3d.weight",
            "mixed_4b.branch_1.1.batch3d.weight", "mixed_5c.branch_3.1.conv3d.weight",
            "conv3d_0c_1x1.conv3d.bias"} <= hassony2
    assert {"conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer4.2.bn3.bias",
            "layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_var", "fc.weight"} <= tushar
    assert len(piergiaj) == len(hassony2)  # the same model under two names


@pytest.mark.parametrize("key_set", list(KEY_SETS))
def test_strict_load_round_trip(files, key_set):
    ks = KEY_SETS[key_set]
    saved = read_state_dict(files[key_set])
    loaded = load_backbone(files[key_set], ks.backbone)
    assert loaded.key_set == key_set and len(loaded.sha256) == 64
    from gsmoe_lib.extract.weights import to_file_names

    back = to_file_names(loaded.model.state_dict(), ks)
    assert set(back) == set(saved)
    for k, v in saved.items():
        assert torch.equal(back[k], v), k


def test_non_local_variant_loads(tmp_path):
    from gsmoe_lib.extract.backbones.resnet50 import I3DResNet50
    from gsmoe_lib.extract.weights import to_file_names

    state = to_file_names(I3DResNet50(use_nl=True).state_dict(), KEY_SETS["tushar-n"])
    assert "layer2.1.nl.theta.weight" in state and "layer3.5.nl.bn.running_var" in state
    torch.save(state, tmp_path / "nl.pt")
    model = load_backbone(tmp_path / "nl.pt", "i3d-r50").model
    assert model.layer2[1].nl is not None and model.layer2[0].nl is None


def test_mismatched_file_lists_missing_and_unexpected_keys(files, tmp_path):
    state = read_state_dict(files["piergiaj"])
    del state["Mixed_5c.b0.conv3d.weight"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(WeightsError) as err:
        load_backbone(tmp_path / "bad.pt", "i3d-inception")
    text = str(err.value)
    assert "1 missing keys (Mixed_5c.b0.conv3d.weight)" in text and "1 unexpected keys (extra.weight)" in text
    assert "bad.pt" in text and "rgb_imagenet.pt" in text and "i3d_rgb.pt" in text


def test_other_backbone_and_unreadable_files(files, tmp_path):
    with pytest.raises(WeightsError, match="holds i3d-r50 weights.*pass --backbone i3d-r50"):
        load_backbone(files["tushar-n"], "i3d-inception")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pt: not a readable PyTorch weights file"):
        load_backbone(tmp_path / "junk.pt", "i3d-inception")
    torch.save({"conv1.weight": torch.zeros(64, 3, 5, 7, 7)}, tmp_path / "partial.pt")
    with pytest.raises(WeightsError, match=r"missing keys .*i3d_r50_kinetics.pth"):
        load_backbone(tmp_path / "partial.pt", "i3d-r50")
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        load_backbone(tmp_path / "absent.pt", "i3d-r50")


@pytest.mark.parametrize("backbone, key_set, width", [("i3d-inception", "piergiaj", 1024), ("i3d-r50", "tushar-n", 2048)])
def test_one_feature_per_clip(files, backbone, key_set, width):
    model = load_backbone(files[key_set], backbone).model
    with torch.inference_mode():
        x = model.features(torch.randn(1, 3, 16, 224, 224))
    assert x.shape == (1, width) and torch.isfinite(x).all()
