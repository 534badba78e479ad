"""GSMoE.from_run / score and `gsmoe score` on the session's tiny finished run (tests/conftest.py)."""

import csv
import json
import shutil

import numpy as np
import pytest

from gsmoe_lib import runs

from gsmoe_lib.cli import main
from gsmoe_lib.data.layouts import open_dataset
from gsmoe_lib.inference import GSMoE, to_crops_first


@pytest.fixture(scope="module")
def detector(tiny_run):
    return GSMoE.from_run(tiny_run)


@pytest.fixture(scope="module")
def test_split(tiny_data):
    return open_dataset(tiny_data, "ucf-crime", "test")


def test_scores_match_the_gate_stage(detector, test_split, tiny_run):
    gate = tiny_run / "seed-0" / "gate"
    final, per_expert = runs.load_scores(gate / "test_scores.npz"), runs.load_scores(gate / "test_expert_scores.npz")
    names = runs.read_json(tiny_run / "seed-0" / "experts" / "metrics.json")["expert_names"]
    assert detector.expert_names == names
    for i in (0, len(test_split.videos) - 1):
        v = test_split.videos[i]
        r = detector.score(test_split.load(i))
        T = test_split.n_snippets(i)
        assert r.scores.shape == (T,) and r.expert_scores.shape == (T, len(names))
        np.testing.assert_allclose(r.scores, final[v.name], atol=1e-5)
        np.testing.assert_allclose(r.expert_scores, per_expert[v.name], atol=1e-5)
        assert r.strongest_expert.tolist() == [names[j] for j in r.expert_scores.argmax(1)]


def test_seed_folder_and_single_crop(detector, test_split, tiny_run):
    same = GSMoE.from_run(tiny_run / "seed-0")
    x = test_split.load(0)[0]  # [T, D], one crop
    np.testing.assert_allclose(same.score(x).scores, detector.score(x[None]).scores, atol=1e-6)
    with pytest.raises(ValueError, match="my.npy"):
        detector.score(np.zeros((5, 7), np.float32), name="my.npy")


def test_a_gate_trained_on_other_experts_is_refused(tiny_run, tmp_path):
    root = tmp_path / "run"
    for stage in ("tgs", "experts", "gate"):
        shutil.copytree(tiny_run / "seed-0" / stage, root / stage)
    (root / "experts" / "DONE").write_text("0123456789abcdef\n")
    with pytest.raises(ValueError, match="no finished experts stage"):
        GSMoE.from_run(root)
    with pytest.raises(FileNotFoundError, match="gate-nope"):
        GSMoE.from_run(root, stage_gate="gate-nope")


def test_layouts():
    ctd = np.arange(2 * 30 * 4, dtype=np.float32).reshape(2, 30, 4)
    np.testing.assert_array_equal(to_crops_first(ctd, 4), ctd)
    np.testing.assert_array_equal(to_crops_first(ctd.transpose(1, 0, 2), 4), ctd)  # RTFM [T, C, D]
    assert to_crops_first(ctd[0], 4).shape == (1, 30, 4)
    with pytest.raises(ValueError, match="ambiguous.*clip.npy|clip.npy.*ambiguous"):
        to_crops_first(np.zeros((5, 8, 4)), 4, name="clip.npy")
    np.testing.assert_array_equal(to_crops_first(np.zeros((5, 8, 4)), 4, "tcd"), np.zeros((8, 5, 4)))
    with pytest.raises(ValueError, match="D=4"):
        to_crops_first(np.zeros((5, 8, 3)), 4)


def test_gsmoe_score_cli_writes_csv_with_alarms(detector, test_split, tiny_run, tmp_path, capsys):
    f1, f2 = tmp_path / "a.npy", tmp_path / "b.npy"
    x1, x2 = test_split.load(0), test_split.load(1)
    np.save(f1, x1)  # [C, T, D]
    np.save(f2, x2.transpose(1, 0, 2))  # [T, C, D]
    op = tmp_path / "op.json"
    op.write_text(json.dumps({"threshold": 0.5, "fps": 30.0}))
    out = tmp_path / "out"
    assert main(["score", "--run", str(tiny_run), str(f1), str(f2), "--out", str(out),
                 "--operating-point", str(op)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    for path, x in ((out / "a_scores.csv", x1), (out / "b_scores.csv", x2)):
        with open(path) as fh:
            rows = list(csv.DictReader(fh))
        ref = detector.score(x)
        assert list(rows[0]) == ["snippet", "start_frame", "end_frame", "score", "strongest_expert",
                                 *detector.expert_names, "alarm"]
        assert len(rows) == x.shape[1]
        assert rows[1]["start_frame"] == "16" and rows[1]["end_frame"] == "31"
        scores = np.array([float(r["score"]) for r in rows])
        np.testing.assert_allclose(scores, ref.scores, atol=1e-5)
        assert [int(r["alarm"]) for r in rows] == (scores >= 0.5).astype(int).tolist()
        assert [r["strongest_expert"] for r in rows] == ref.strongest_expert.tolist()

    assert main(["score", "--run", str(tiny_run), str(f1), "--out", str(tmp_path / "plain")]) == 0
    with open(tmp_path / "plain" / "a_scores.csv") as fh:
        assert "alarm" not in next(csv.reader(fh))
