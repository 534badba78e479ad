import argparse

import numpy as np
import pytest
from helpers import features, write_rtfm, write_ucf, write_xd

from gsmoe_lib.data import check
from gsmoe_lib.data.check import check_dataset


def only_problem(report, *fragments):
    assert len(report.problems) == 1, report.problems
    for fragment in fragments:
        assert fragment in report.problems[0], report.problems[0]


def test_clean_ucf_summary(tmp_path):
    report = check_dataset(write_ucf(tmp_path))
    assert report.ok and report.feature_dim == 8
    train, test = report.splits["train"], report.splits["test"]
    assert (train.videos, train.snippets, train.crops, train.layout) == (4, 14, 3, "per-crop")
    assert train.per_class == {"Abuse": 1, "Arson": 1, "Normal": 2}
    assert (test.videos, test.snippets) == (2, 9)
    assert "no problems found" in report.summary()


def test_clean_rtfm_and_xd(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "x").mkdir()
    assert check_dataset(write_rtfm(tmp_path / "r")).ok
    report = check_dataset(write_xd(tmp_path / "x"), "xd-violence")
    assert report.ok and report.splits["train"].per_class == {"Fighting": 1, "Shooting": 1, "Explosion": 1, "Normal": 1}


def corrupt_file(root, name, array):
    folder = "Abuse" if name.startswith("Abuse") else "Arson"
    np.save(root / "features" / folder / name, array)
    return str(root / "features" / folder / name)


@pytest.mark.parametrize("array,fragment", [
    (features(4, 8, 0), "crops have different T"),
    (np.full((5, 8), np.nan, np.float32), "contains NaN or Inf (first at snippet 0)"),
    (np.where(np.arange(5)[:, None] == 3, np.inf, features(5, 8, 0)).astype(np.float32),
     "NaN or Inf (first at snippet 3)"),
    (features(5, 9, 0), "feature dimension D=9, most files have D=8"),
    (np.zeros((0, 8), np.float32), "has T = 0 snippets"),
    (np.zeros((5, 8, 1), np.float32), "expected [T, D]"),
])
def test_corrupt_feature_files(tmp_path, array, fragment):
    root = write_ucf(tmp_path)
    path = corrupt_file(root, "Abuse001_x264__1.npy", array)
    report = check_dataset(root)
    assert not report.ok
    assert any(fragment in p and ("Abuse001_x264" in p or path in p) for p in report.problems), report.problems


def test_missing_file(tmp_path):
    root = write_ucf(tmp_path)
    (root / "features" / "Arson" / "Arson002_x264__2.npy").unlink()
    only_problem(check_dataset(root), "Arson002_x264", "Arson002_x264__2.npy", "UCF_Train.list")


def test_list_problems(tmp_path):
    root = write_ucf(tmp_path)
    with open(root / "UCF_Train.list", "a") as f:
        f.write("dataset/Abuse/Abuse001_x264__0.npy\n")
    only_problem(check_dataset(root), "UCF_Train.list:13: duplicate video Abuse001_x264")
    lines = (root / "UCF_Test.list").read_text().replace("Abuse028", "Parade028")
    (root / "UCF_Test.list").write_text(lines)
    for c in range(3):
        folder = root / "features" / "Abuse"
        (folder / f"Abuse028_x264__{c}.npy").rename(folder / f"Parade028_x264__{c}.npy")
    problems = check_dataset(root).problems
    assert any("UCF_Test.list:1: unknown class for video Parade028_x264" in p for p in problems), problems
    assert any("annotation for video Abuse028_x264, which is not in the test list" in p for p in problems), problems


def test_video_in_both_splits_and_malformed_line(tmp_path):
    root = write_ucf(tmp_path)
    with open(root / "UCF_Test.list", "a") as f:
        f.write("dataset/Arson/Arson002_x264__0.npy\n")
    problems = check_dataset(root).problems
    assert any("Arson002_x264 is in both" in p for p in problems), problems
    with open(root / "UCF_Train.list", "a") as f:
        f.write("garbage line\n")
    problems = check_dataset(root).problems
    assert any("UCF_Train.list:13: cannot read a video" in p for p in problems), problems


def test_annotation_problems(tmp_path):
    root = write_ucf(tmp_path)
    ann = root / "UCF_Annotation.txt"
    text = ann.read_text()
    # Abuse028 has T=6 (96 frames + 5): a window ending at frame 140 is past its 101 frames + 16
    ann.write_text(text.replace("Abuse028_x264.mp4 101 Abuse 16 40", "Abuse028_x264.mp4 101 Abuse 16 140"))
    only_problem(check_dataset(root), "video Abuse028_x264", "ends past its 101 frames", "UCF_Annotation.txt:1")
    ann.write_text(text.replace("Abuse028_x264.mp4 101", "Abuse028_x264.mp4 300"))
    only_problem(check_dataset(root), "video Abuse028_x264: features have T=6", "UCF_Annotation.txt:1")
    ann.write_text(text.splitlines()[1] + "\n")
    only_problem(check_dataset(root), "Abuse028_x264: abnormal test video without annotation")


def test_cli_run_reads_dataset_json(tmp_path, capsys):
    root = write_xd(tmp_path)
    parser = argparse.ArgumentParser()
    check.add_arguments(parser)
    assert check.run(parser.parse_args(["--data-root", str(root)])) == 0
    out = capsys.readouterr().out
    assert "dataset xd-violence" in out and "no problems found" in out
    assert "untrained L2-norm score (no training): AUC" in out  # data.magnitude, on a dataset without problems
    assert check.run(parser.parse_args(["--data-root", str(root), "--no-magnitude"])) == 0
    assert "L2-norm" not in capsys.readouterr().out
    (root / "features" / "train" / "Movie.A__#1_label_B1-B2-0__1.npy").unlink()
    assert check.run(parser.parse_args(["--data-root", str(root)])) == 1
    out = capsys.readouterr().out
    assert "PROBLEM: video Movie.A__#1_label_B1-B2-0" in out
    # A missing data root is a user error: one line from the command, exit status 2 (cli.main).
    from gsmoe_lib.cli import main

    assert main(["data", "check", "--data-root", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gsmoe data check: error: data root") and "none" in err and "\n" not in err
