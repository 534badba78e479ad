import numpy as np
import pytest
import torch
from helpers import UCF_TRAIN, write_ucf, write_xd

from gsmoe_lib.data.batching import TrainSet, pool_segments
from gsmoe_lib.data.layouts import open_dataset


def process_feat(feat: np.ndarray, length: int) -> np.ndarray:
    """UR-DMU's process_feat, written as a plain loop (the reference)."""
    out = np.zeros((length, feat.shape[1]), dtype=np.float32)
    r = np.linspace(0, len(feat), length + 1).astype(int)
    for i in range(length):
        out[i] = feat[r[i]:r[i + 1]].mean(0) if r[i] != r[i + 1] else feat[r[i]]
    return out


@pytest.mark.parametrize("t,s", [(1, 5), (3, 7), (7, 5), (200, 200), (451, 200), (13, 13)])
def test_pool_segments_matches_process_feat(t, s):
    x = np.random.default_rng(t).random((t, 6), dtype=np.float32)
    np.testing.assert_allclose(pool_segments(x, s), process_feat(x, s), rtol=1e-6)
    got = pool_segments(torch.from_numpy(x), s)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), process_feat(x, s), rtol=1e-6)


def test_pool_segments_leading_axes_and_hand_case():
    x = np.arange(2 * 3 * 1, dtype=np.float32).reshape(2, 3, 1)  # [C=2, T=3, D=1]
    # T=3, S=2: bounds [0, 1, 3] -> means of [0] and [1, 2]
    np.testing.assert_array_equal(pool_segments(x, 2)[..., 0], [[0, 1.5], [3, 4.5]])
    with pytest.raises(ValueError, match="T = 0"):
        pool_segments(np.zeros((0, 4), np.float32), 3)


def test_trainset_independent_crops(tmp_path):
    ds = open_dataset(write_ucf(tmp_path))
    ts = TrainSet.from_dataset(ds, n_segments=4, progress=False)
    assert ts.features.shape == (4 * 3, 4, 8) and ts.features.dtype == torch.float32
    assert ts.labels.tolist() == [1.0] * 6 + [0.0] * 6
    assert ts.video_index.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert ts.class_index[:, 0].tolist() == [1.0] * 3 + [0.0] * 9  # Abuse
    assert ts.class_index[3:6, 1].tolist() == [1.0] * 3  # Arson
    expected = process_feat(ds.load(1)[2], 4)  # video 1, crop 2
    np.testing.assert_allclose(ts.features[1 * 3 + 2].numpy(), expected, rtol=1e-6)
    assert ts.video_names == [v for _, v, _ in UCF_TRAIN]


def test_trainset_axis_crops_multilabel_and_dtype(tmp_path):
    ds = open_dataset(write_xd(tmp_path), "xd-violence")
    ts = TrainSet.from_dataset(ds, n_segments=3, crops="axis", dtype=torch.float64, progress=False)
    assert ts.features.shape == (3, 2, 3, 6) and ts.features.dtype == torch.float64
    assert ts.classes == ("Explosion", "Fighting", "Shooting")
    assert ts.class_index.tolist() == [[0, 1, 1], [1, 0, 0], [0, 0, 0]]
    np.testing.assert_allclose(ts.features[2, 1].numpy(), process_feat(ds.load(2)[1], 3), rtol=1e-6)
    with pytest.raises(ValueError, match="crops mode"):
        TrainSet.from_dataset(ds, crops="stacked", progress=False)


def make_set(labels):
    n = len(labels)
    return TrainSet(torch.zeros(n, 1, 1), torch.tensor(labels, dtype=torch.float32), torch.zeros(n, 0),
                    torch.arange(n), (), [str(i) for i in range(n)], "independent")


def test_sampler_halves_without_replacement():
    ts = make_set([0] * 10 + [1] * 6)
    batches = ts.sampler(batch_normal=5, batch_abnormal=3, generator=torch.Generator().manual_seed(0))
    first, second = next(batches), next(batches)
    for b in (first, second):
        assert b.shape == (8,) and (ts.labels[b[:5]] == 0).all() and (ts.labels[b[5:]] == 1).all()
    # two batches of one permutation cover each side exactly once
    assert sorted(torch.cat([first[:5], second[:5]]).tolist()) == list(range(10))
    assert sorted(torch.cat([first[5:], second[5:]]).tolist()) == list(range(10, 16))


def test_sampler_small_side_with_replacement_and_subset():
    ts = make_set([0] * 3 + [1] * 20)
    b = next(ts.sampler(8, 4, torch.Generator().manual_seed(1)))
    assert set(b[:8].tolist()) <= {0, 1, 2} and len(b) == 12
    among = torch.tensor([0, 1, 2, 5, 6])
    b = next(ts.sampler(2, 2, torch.Generator().manual_seed(2), among=among))
    assert set(b[2:].tolist()) <= {5, 6}
    with pytest.raises(ValueError, match="no abnormal samples"):
        next(make_set([0, 0]).sampler(1, 1))
