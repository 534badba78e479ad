"""Layouts on small fake feature trees (built by tests/helpers.py)."""

import numpy as np
import pytest
from helpers import UCF_TRAIN, features, write_rtfm, write_ucf, write_xd

from gsmoe_lib.data.layouts import PACKAGED, FileIndex, detect_dataset_name, open_dataset, resolve_lists


def test_per_crop_ucf_from_data_root_only(tmp_path):
    root = write_ucf(tmp_path)
    train = open_dataset(root)
    assert [v.name for v in train.videos] == [v for _, v, _ in UCF_TRAIN]
    assert (train.layout, train.n_crops, train.feature_dim) == ("per-crop", 3, 8)
    assert train.classes == ("Abuse", "Arson") and train.lists["train"].source == "data root"
    x = train.load(0)
    assert x.shape == (3, 5, 8) and x.dtype == np.float32
    np.testing.assert_array_equal(x[2], np.load(root / "features" / "Abuse" / "Abuse001_x264__2.npy"))
    assert train.n_snippets(1) == 3
    test = open_dataset(root, split="test")
    assert test.classes == train.classes and set(test.annotations) == {"Abuse028_x264", "Normal_Videos_003_x264"}
    labels = test.frame_labels(0)
    assert labels.shape == (96,) and np.flatnonzero(labels).tolist() == list(range(16, 40))
    assert not test.frame_labels(1).any()
    with pytest.raises(ValueError, match="Abuse001_x264: abnormal video without frame annotation"):
        train.frame_labels(0)


def test_rtfm_per_video_layout(tmp_path):
    root = write_rtfm(tmp_path)
    ds = open_dataset(root)
    assert (ds.layout, ds.n_crops, ds.feature_dim) == ("per-video", 4, 5)
    raw = np.load(root / "rtfm_Train" / "Abuse001_x264_i3d.npy")  # [T, C, D]
    np.testing.assert_array_equal(ds.load(0), raw.transpose(1, 0, 2))
    test = open_dataset(root, split="test")
    assert test.lists["annotations"].path.name == "Temporal_Anomaly_Annotation.txt"
    assert np.flatnonzero(test.frame_labels(0)).tolist() == list(range(16, 40))


def test_xd_multi_label(tmp_path):
    root = write_xd(tmp_path)
    assert detect_dataset_name(root) == "xd-violence"
    ds = open_dataset(root, "xd-violence")
    assert ds.classes == ("Explosion", "Fighting", "Shooting")
    assert [v.classes for v in ds.videos] == [("Fighting", "Shooting"), ("Explosion",), ()]
    assert (ds.n_crops, ds.feature_dim, ds.load(2).shape) == (2, 6, (2, 5, 6))
    test = open_dataset(root, "xd-violence", "test")
    assert test.videos[0].classes == ("Car accident",)
    assert np.flatnonzero(test.frame_labels(0)).tolist() == list(range(0, 20)) + list(range(40, 50))
    assert not test.frame_labels(1).any()  # normal test video: no annotation line


def test_list_resolution_order(tmp_path):
    (tmp_path / "a").mkdir()
    root = write_ucf(tmp_path / "a")
    other = tmp_path / "mine.list"
    other.write_text("x/Arson/Arson002_x264__0.npy\n")
    chosen = resolve_lists(root, train_list=other)
    assert (chosen["train"].path, chosen["train"].source) == (other, "argument")
    assert chosen["test"].source == "data root"
    assert [v.name for v in open_dataset(root, train_list=other).videos] == ["Arson002_x264"]
    empty = tmp_path / "b"
    empty.mkdir()
    packaged = resolve_lists(empty, "xd-violence")
    assert {k: c.path for k, c in packaged.items()} == PACKAGED["xd-violence"]
    assert all(c.source == "packaged" for c in packaged.values())
    with pytest.raises(FileNotFoundError, match="nope.list"):
        resolve_lists(root, test_list=tmp_path / "nope.list")


def test_missing_and_ambiguous_files_name_the_video(tmp_path):
    root = write_ucf(tmp_path)
    (root / "features" / "Arson" / "Arson002_x264__1.npy").unlink()
    with pytest.raises(ValueError, match=r"Arson002_x264 .*missing crop file\(s\) Arson002_x264__1.npy"):
        open_dataset(root)
    copy = root / "elsewhere" / "Abuse001_x264__0.npy"
    copy.parent.mkdir()
    copy.write_bytes((root / "features" / "Abuse" / "Abuse001_x264__0.npy").read_bytes())
    assert "Abuse001_x264__0.npy" in FileIndex.build(root).ambiguous


def test_crops_with_different_t_fail_on_load(tmp_path):
    root = write_ucf(tmp_path)
    np.save(root / "features" / "Abuse" / "Abuse001_x264__1.npy", features(4, 8, 0))
    ds = open_dataset(root)
    with pytest.raises(ValueError, match=r"Abuse001_x264: crops have different numbers of snippets .*__1.npy: T=4"):
        ds.load(0)
