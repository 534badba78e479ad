"""The drift world (gsmoe_lib/data/synthetic/drift.py): a second synthetic world, for reporting only.

Its features are non-negative and temporally smooth, its normal videos have scene cuts, its anomalies are
short and abrupt as well as long and gradual, its classes form a hierarchy, and it is written in the same
layouts as the default world (so every loader reads it). Its magnitude is tested in test_magnitude.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from gsmoe_lib.data import synthetic as S
from gsmoe_lib.data.layouts import open_dataset
from gsmoe_lib.data.synthetic import drift
from gsmoe_lib.data.synthetic.plan import plan_dataset


@pytest.fixture(scope="module")
def quick_drift(tmp_path_factory):
    # the quick profile's counts and lengths; D=64 keeps the file fast
    return S.synthesize(tmp_path_factory.mktemp("drift") / "quick", "quick", seed=0, world="drift", feature_dim=64)


def _normal_train(root):
    train = open_dataset(root, "ucf-crime", "train")
    return [(i, v) for i, v in enumerate(train.videos) if v.label == 0], train


def test_metadata_layout_and_check(quick_drift, tmp_path):
    from gsmoe_lib.data import check

    meta = json.loads((quick_drift / S.DATASET_FILE).read_text())
    assert meta["world"] == "drift" and meta["layout"] == "ucf-percrop"
    assert meta["world_config"]["cut_rate"] == drift.DriftConfig().cut_rate
    assert check.check_dataset(quick_drift, "ucf-crime").problems == []
    xd = S.synthesize(tmp_path / "xd", "tiny", dataset="xd-violence", world="drift", feature_dim=8)
    assert check.check_dataset(xd, "xd-violence").problems == []
    # the plan is the default world's: same videos and windows for the same seed and profile
    default = S.synthesize(tmp_path / "default", "quick", seed=0, feature_dim=8)
    for name in ("UCF_Train.list", "UCF_Test.list", "UCF_Annotation.txt"):
        assert (default / name).read_text() == (quick_drift / name).read_text()


def test_features_are_non_negative_and_smooth(quick_drift):
    normal, train = _normal_train(quick_drift)
    lag1 = []
    for i, _ in normal:
        x = train.load(i)                                  # [C, T, D]
        assert x.dtype == np.float32 and (x >= 0).all()
        a = x.mean(0).astype(np.float64)
        a -= a.mean(0)
        lag1.append(np.median((a[1:] * a[:-1]).sum(0) / ((a * a).sum(0) + 1e-12)))  # per dimension, then median
    # (white noise: 0; the default world's floor on one video: 0.7)
    assert np.median(lag1) > 0.7 and np.percentile(lag1, 10) > 0.5, np.percentile(lag1, [10, 50])


def test_normal_videos_have_scene_cuts(quick_drift):
    """Every scene cut (replayed from the video's own random stream) is an abrupt change of the feature's
    direction: larger than 95% of the video's other snippet-to-snippet steps."""
    normal, train = _normal_train(quick_drift)
    cfg = drift.drift_config("quick")
    n_cuts, abrupt, with_cuts = 0, 0, 0
    for i, v in normal:
        x = train.load(i).mean(0).astype(np.float64)      # [T, D]
        scenes = drift.scene_cuts(drift.drift_video_rng(0, 0, i), len(x), cfg.cut_rate)  # its first draw
        cuts = np.flatnonzero(np.diff(scenes))             # step t -> t+1
        if not len(cuts):
            continue
        with_cuts += 1
        u = x / np.linalg.norm(x, axis=1, keepdims=True)
        step = np.linalg.norm(np.diff(u, axis=0), axis=1)
        n_cuts += len(cuts)
        abrupt += int((step[cuts] > np.percentile(np.delete(step, cuts), 95)).sum())
    assert with_cuts > len(normal) / 3  # 0.8 cuts per 100 snippets; quick videos are ~90 snippets long
    assert abrupt >= 0.9 * n_cuts, (abrupt, n_cuts)


def test_anomalies_short_and_abrupt_as_well_as_long_and_gradual():
    cfg = S.synth_config("quick")
    dcfg = drift.drift_config("quick")
    plan = plan_dataset(cfg, 0, "ucf-crime")
    lengths, rises = [], []
    for i, v in enumerate(plan["train"] + plan["test"]):
        if not v.classes:
            assert not drift.anomaly_mixing(v, dcfg, np.random.default_rng(i)).any()
            continue
        alpha = drift.anomaly_mixing(v, dcfg, np.random.default_rng(i))
        assert 0 < alpha.max() < 1 and alpha.min() == 0
        for s, e in v.windows:
            t0, t1 = s // 16, (e + 1) // 16
            inside = alpha[t0:t1]
            lengths.append(t1 - t0)
            if len(inside) and inside.max() > 0:
                rises.append(int(np.argmax(inside >= 0.9 * inside.max())))  # snippets to 90% of the peak
    assert min(lengths) <= 3 and max(lengths) >= 30
    assert min(rises) <= 1 and max(rises) >= 10  # abrupt onsets and gradual ones


def test_class_hierarchy_and_prototypes():
    from gsmoe_lib.data.lists import UCF_CLASSES, XD_CLASSES

    assert all(drift.family_of(c) for c in {*UCF_CLASSES, *XD_CLASSES})  # every class has a family
    classes = list(UCF_CLASSES)
    world = drift.make_drift_world(drift.DriftConfig(), 32, 0, classes)
    assert (world.atoms >= 0).all() and np.allclose(np.linalg.norm(world.atoms, axis=1), 1)
    pi = world.prototypes
    assert all(np.isclose(p.sum(), 1) and (p >= 0).all() for p in pi.values())
    shared = lambda a, b: float(np.minimum(pi[a], pi[b]).sum())  # noqa: E731 - weight two prototypes share
    # same family (violence) share more than across families; every pair shares the common anomaly atom
    assert shared("Fighting", "Assault") > shared("Fighting", "Shoplifting") > 0
    with pytest.raises(ValueError, match="no family"):
        drift.family_of("Jaywalking")


def test_unknown_world_and_config_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown world 'mars'"):
        S.synthesize(tmp_path / "x", "tiny", world="mars")
    with pytest.raises(ValueError, match="unknown DriftConfig field"):
        S.synthesize(tmp_path / "x", "tiny", world="drift", world_overrides={"saliency": 1})
    assert not (tmp_path / "x").exists()
