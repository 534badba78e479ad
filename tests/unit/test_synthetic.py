import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from gsmoe_lib.data import synthetic as S
from gsmoe_lib.data.lists import UCF_CLASSES, UCF_TRAIN_COUNTS, XD_CODES
from gsmoe_lib.data.synthetic.plan import plan_ucf, ucf_real_test

UCF_LIST = re.compile(r"^dataset/(?P<folder>[A-Za-z_]+)/(?P<video>[A-Za-z_]+\d+_x264)__(?P<crop>\d+)\.npy$")
UCF_ANN = re.compile(r"^(?P<folder>[A-Za-z_]+)/(?P<video>[A-Za-z_]+\d+_x264)\.mp4 (?P<n>\d+) (?P<cls>[A-Za-z]+)"
                     r" (?P<s1>-?\d+) (?P<e1>-?\d+) (?P<s2>-?\d+) (?P<e2>-?\d+)$")
XD_NAME = re.compile(r"^Synth\.Movie\.\d{3}__#\d\d-\d\d-\d\d_\d\d-\d\d-\d\d_label_(?P<label>A|(?:B[1-6]|G)-(?:B[1-6]|G|0)-0)$")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    # D=64 keeps the file fast; every other knob is the tiny profile's
    return S.synthesize(tmp_path_factory.mktemp("s") / "tiny", "tiny", seed=0, feature_dim=64)


def _videos(list_path: Path) -> list[str]:
    out: list[str] = []
    for line in list_path.read_text().splitlines():
        name = Path(line).name.rsplit("__", 1)[0]
        if not out or out[-1] != name:
            out.append(name)
    return out


def _features(root: Path, name: str, n_crops: int) -> np.ndarray:
    files = {p.name: p for p in root.rglob(f"{name}__*.npy")}
    return np.stack([np.load(files[f"{name}__{c}.npy"]) for c in range(n_crops)])  # [C, T, D]


def _annotations(root: Path) -> dict[str, re.Match]:
    return {m["video"]: m for m in map(UCF_ANN.match, (root / "UCF_Annotation.txt").read_text().splitlines())}


def test_list_and_annotation_formats(tiny):
    meta = json.loads((tiny / "gsmoe_dataset.json").read_text())
    assert (meta["dataset"], meta["layout"], meta["profile"], meta["seed"]) == ("ucf-crime", "ucf-percrop", "tiny", 0)
    for fname in ("UCF_Train.list", "UCF_Test.list"):
        lines = (tiny / fname).read_text().splitlines()
        matches = [UCF_LIST.match(line) for line in lines]
        assert all(matches), [line for line, m in zip(lines, matches) if not m][:3]
        assert len(lines) == 2 * len(_videos(tiny / fname))  # 2 crops per video, consecutive
        normal = [m["folder"].endswith("Normal_Videos_Anomaly") for m in matches]
        assert normal == sorted(normal)  # abnormal first, then normal
        abnormal = [m["folder"] for m in matches if not m["folder"].endswith("Anomaly")]
        assert abnormal == sorted(abnormal)  # class-alphabetical
    assert all(n.startswith("Normal_Videos_") for n in _videos(tiny / "UCF_Test.list") if n.startswith("Normal"))
    assert all(re.fullmatch(r"Normal_Videos\d{3}_x264", n) for n in _videos(tiny / "UCF_Train.list") if n.startswith("Normal"))
    lines = (tiny / "UCF_Annotation.txt").read_text().splitlines()
    assert all(UCF_ANN.match(line) for line in lines), lines[:3]
    ann = _annotations(tiny)
    assert list(ann) == _videos(tiny / "UCF_Test.list")
    for m in ann.values():
        if m["cls"] == "Normal":
            assert m["folder"] == "Testing_Normal_Videos_Anomaly" and m["s1"] == "-1" and m["s2"] == "-1"


def test_frame_counts_match_snippets_and_windows_inside(tiny):
    for name, m in _annotations(tiny).items():
        x = _features(tiny, name, 2)
        t, n = x.shape[1], int(m["n"])
        # DeepMIL: floor(n/16), one fewer when 16 divides n
        assert t == n // 16 - (n % 16 == 0), name
        for s, e in ((int(m["s1"]), int(m["e1"])), (int(m["s2"]), int(m["e2"]))):
            if s >= 0:
                assert 0 <= s <= e < 16 * t <= n, (name, s, e, t)


def test_features_nonnegative_smooth_and_crops_close(tiny):
    x = _features(tiny, _videos(tiny / "UCF_Train.list")[-1], 2)  # a normal train video
    assert x.dtype == np.float32 and x.shape[2] == 64 and (x >= 0).all()
    a = x[0] - x[0].mean(0)  # [T, D]
    lag1 = (a[1:] * a[:-1]).sum(0) / (a * a).sum(0)
    assert np.median(lag1) > 0.7
    # crops agree but are not identical
    assert not np.array_equal(x[0], x[1])
    assert np.abs(x[0] - x[1]).mean() < 0.1 * x.mean()


def test_class_proportions_and_multi_window():
    cfg = S.synth_config("quick")
    plan = plan_ucf(cfg, seed=3)
    counts = {c: sum(1 for v in plan["train"] if v.classes == (c,)) for c in UCF_CLASSES}
    assert sum(counts.values()) == cfg.n_train_abnormal and min(counts.values()) >= 1
    expected = {c: cfg.n_train_abnormal * n / 810 for c, n in UCF_TRAIN_COUNTS.items()}
    # the guaranteed one per class shifts the proportional split by less than 2 videos
    assert all(abs(counts[c] - expected[c]) < 2 for c in counts), (counts, expected)
    assert sum(1 for v in plan["train"] if not v.classes) == cfg.n_train_normal
    # real test videos keep their names; two-window videos are present in both splits
    order, info = ucf_real_test()
    assert {v.name for v in plan["test"]} <= set(info)
    assert {v.classes[0] for v in plan["test"] if v.classes} == set(UCF_CLASSES)
    assert any(len(v.windows) == 2 for v in plan["test"]) and any(len(v.windows) == 2 for v in plan["train"])


def test_synth_config_profiles_and_overrides():
    """Synthetic profiles (tiny / quick / full) are not the training profiles (tiny / quick / paper)."""
    assert set(S.SYNTH_PROFILES) == {"tiny", "quick", "full"}
    tiny, quick = S.synth_config("tiny"), S.synth_config("quick")
    assert (tiny.n_train_abnormal, tiny.n_crops, tiny.saliency_scale) == (20, 2, 5.0)
    assert quick == S.SynthConfig()  # quick is the SynthConfig defaults
    assert S.synth_config("tiny", "xd-violence").n_crops == 5  # XD features come in 5 crops
    full_xd = S.synth_config("full", "xd-violence")
    assert (full_xd.n_train_abnormal, full_xd.n_test_normal, full_xd.n_crops) == (1905, 300, 5)
    assert S.synth_config("tiny", n_crops=3, feature_dim=None).n_crops == 3  # None leaves the profile's value
    with pytest.raises(ValueError, match="unknown profile 'paper'; expected one of tiny, quick, full"):
        S.synth_config("paper")  # a training profile name
    with pytest.raises(ValueError, match="unknown SynthConfig field"):
        S.synth_config("tiny", iterations=3)


def test_tiny_has_a_two_window_test_video(tiny):
    assert any(m["s2"] != "-1" for m in _annotations(tiny).values())


def test_deterministic_for_a_seed(tmp_path, tiny):
    again = S.synthesize(tmp_path / "again", "tiny", seed=0, feature_dim=64)
    other = S.synthesize(tmp_path / "other", "tiny", seed=1, feature_dim=64)
    files = sorted(p.relative_to(tiny) for p in tiny.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((tiny / f).read_bytes() == (again / f).read_bytes() for f in files)
    a = np.load(next((tiny / "features" / "Training_Normal_Videos_Anomaly").iterdir()))
    b_path = other / "features" / "Training_Normal_Videos_Anomaly"
    b = [np.load(p) for p in b_path.iterdir()]
    assert all(a.shape != y.shape or not np.array_equal(a, y) for y in b)


# What the generator wrote for ("tiny", seed 0, D=8) at GENERATOR_VERSION 2 (anomalies magnitude-matched,
# magnitude bursts, the "world" key in gsmoe_dataset.json): sha256 of the top-level files (lists, annotation,
# gsmoe_dataset.json) by name, and the number, sum and sum of squares of all feature values. Sums, not bytes,
# for the features: the projection is a BLAS matmul whose last bits may differ between machines.
PINNED = {
    "ucf-crime": ("b3bb2d7330fde1631cdd0acea84b0ff31293dfbe8fb92b31fd7daf560a85fc23", 126,
                  14541.223629108943, 9610.869281413794),
    "xd-violence": ("a7e00688151d39a946d8ba5be7e3c21f6b66f535373debded7e8616916310184", 315,
                    27516.026970951098, 19643.488970839066),
}
# Version 1 (every anomaly raises the norm) is still written by anomaly_magnitude="free" without magnitude
# bursts: its feature sums, as pinned at version 1.
PINNED_VERSION_1 = {
    "ucf-crime": (126, 15413.428516657179, 13212.086309630937),
    "xd-violence": (315, 27879.30083039569, 20841.93447830936),
}


def _feature_sums(root: Path) -> tuple[int, float, float]:
    arrays = [np.load(p).astype(np.float64) for p in sorted(root.rglob("*.npy"))]
    return len(arrays), sum(float(a.sum()) for a in arrays), sum(float((a * a).sum()) for a in arrays)


@pytest.mark.parametrize("dataset", sorted(PINNED))
def test_generator_output_is_pinned(tmp_path, dataset):
    """A change of what the generator writes must be deliberate: bump GENERATOR_VERSION and re-pin."""
    root = S.synthesize(tmp_path / "d", "tiny", seed=0, dataset=dataset, feature_dim=8)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.iterdir() if p.is_file()):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    text_sha, n_files, total, squares = PINNED[dataset]
    assert S.GENERATOR_VERSION == 2
    assert digest.hexdigest() == text_sha
    n, got_total, got_squares = _feature_sums(root)
    assert n == n_files
    assert got_total == pytest.approx(total, rel=1e-9)
    assert got_squares == pytest.approx(squares, rel=1e-9)


@pytest.mark.parametrize("dataset", sorted(PINNED_VERSION_1))
def test_free_magnitude_writes_version_1_features(tmp_path, dataset):
    root = S.synthesize(tmp_path / "d", "tiny", seed=0, dataset=dataset, feature_dim=8,
                        anomaly_magnitude="free", magnitude_burst_rate=0.0)
    n, total, squares = _feature_sums(root)
    assert (n, total, squares) == (PINNED_VERSION_1[dataset][0], pytest.approx(PINNED_VERSION_1[dataset][1], rel=1e-9),
                                   pytest.approx(PINNED_VERSION_1[dataset][2], rel=1e-9))


def test_existing_dataset_rules(tmp_path):
    out = S.synthesize(tmp_path / "d", "tiny", seed=0, feature_dim=8)
    mtime = (out / "gsmoe_dataset.json").stat().st_mtime_ns
    assert S.synthesize(out, "tiny", seed=0, feature_dim=8) == out  # same dataset: left alone
    assert (out / "gsmoe_dataset.json").stat().st_mtime_ns == mtime
    with pytest.raises(FileExistsError, match="different synthetic dataset"):
        S.synthesize(out, "tiny", seed=5, feature_dim=8)
    S.synthesize(out, "tiny", seed=5, feature_dim=8, force=True)
    assert json.loads((out / "gsmoe_dataset.json").read_text())["seed"] == 5
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not a gsmoe synthetic dataset"):
        S.synthesize(foreign, "tiny", feature_dim=8, force=True)
    assert (foreign / "notes.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "mine"]  # no temporary folders left


def test_failure_midway_leaves_no_dataset(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_save = np.save

    def failing_save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 20:
            raise KeyboardInterrupt("interrupted")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(np, "save", failing_save)  # the writer calls np.save once per crop file
    with pytest.raises(KeyboardInterrupt):
        S.synthesize(tmp_path / "d", "tiny", feature_dim=8)
    assert list(tmp_path.iterdir()) == []


def test_xd_names_labels_and_annotations(tmp_path):
    out = S.synthesize(tmp_path / "xd", "tiny", dataset="xd-violence", feature_dim=8, n_crops=None)
    meta = json.loads((out / "gsmoe_dataset.json").read_text())
    assert meta["layout"] == "xd-percrop" and meta["config"]["n_crops"] == 5
    for split in ("train", "test"):
        lines = (out / f"XD_{split.capitalize()}.list").read_text().splitlines()
        assert all(re.fullmatch(r"[^/]+__[0-4]\.npy", line) for line in lines)
        names = _videos(out / f"XD_{split.capitalize()}.list")
        assert len(lines) == 5 * len(names)
        labels = [XD_NAME.match(n)["label"] for n in names]
        assert labels.index("A") == sum(1 for lab in labels if lab != "A")  # abnormal first
        assert {c for lab in labels for c in lab.split("-")} - {"A", "0"} == set(XD_CODES)
        assert all((out / "features" / split / f"{names[0]}__{c}.npy").is_file() for c in range(5))
    ann = [line.split() for line in (out / "annotations.txt").read_text().splitlines()]
    test_names = _videos(out / "XD_Test.list")
    assert [a[0] for a in ann] == [n for n in test_names if not n.endswith("label_A")]
    for a in ann:
        t = np.load(out / "features" / "test" / f"{a[0]}__0.npy", mmap_mode="r").shape[0]
        w = [int(v) for v in a[1:]]
        assert len(w) % 2 == 0 and all(0 <= w[i] <= w[i + 1] < 16 * t for i in range(0, len(w), 2))


def test_difficulty_probe(tiny):
    """An oracle linear probe on test labels separates anomalies; subtle classes move features less."""
    ann = _annotations(tiny)
    xs, ys, cls = [], [], []
    for name, m in ann.items():
        x = _features(tiny, name, 2).mean(0)  # [T, D]
        lab = np.zeros(16 * len(x))
        for s, e in ((int(m["s1"]), int(m["e1"])), (int(m["s2"]), int(m["e2"]))):
            if s >= 0:
                lab[s:e + 1] = 1
        xs.append(x)
        ys.append(lab.reshape(-1, 16).mean(1) > 0.5)
        cls += [m["cls"]] * len(x)
    x, y, cls = np.concatenate(xs), np.concatenate(ys), np.array(cls)
    probe = LogisticRegression(max_iter=2000).fit(x, y)
    assert roc_auc_score(y, probe.decision_function(x)) > 0.9

    # distance of anomalous snippets from the normal-video mean, relative to normal snippets' own spread
    normal = x[cls == "Normal"]
    centre, spread = normal.mean(0), np.linalg.norm(normal - normal.mean(0), axis=1).mean()
    def dist(classes):
        sel = np.isin(cls, classes) & y
        return np.linalg.norm(x[sel] - centre, axis=1).mean() / spread
    assert dist(["Shoplifting", "Stealing", "Arrest"]) < dist(["Explosion", "Arson", "RoadAccidents"])


def test_cli_arguments(tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    S.add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path / "c"), "--profile", "tiny", "--crops", "1", "--feature-dim", "4"])
    assert S.run(args) == 0
    assert len(np.load(next((tmp_path / "c" / "features" / "Arson").iterdir())).shape) == 2
    assert "estimated" in capsys.readouterr().out
    from gsmoe_lib.cli import main

    # A different dataset is there and --force is missing: a user error, one line, exit status 2 (cli.main).
    assert main(["data", "synth", "--out", str(tmp_path / "c"), "--profile", "tiny", "--seed", "2"]) == 2
    assert capsys.readouterr().err.startswith("gsmoe data synth: error: ")


def test_round_trip_through_check(tiny, tmp_path):
    from gsmoe_lib.data import check
    report = check.check_dataset(tiny, "ucf-crime")
    assert report.problems == []
    xd = S.synthesize(tmp_path / "xd", "tiny", dataset="xd-violence", feature_dim=8)
    assert check.check_dataset(xd, "xd-violence").problems == []
