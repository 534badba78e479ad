from collections import Counter

import pytest

from gsmoe_lib.data.layouts import PACKAGED, RESOURCES
from gsmoe_lib.data.lists import (
    UCF_CLASSES,
    UCF_TRAIN_COUNTS,
    parse_feature_name,
    read_annotations,
    read_list,
    ucf_class,
    xd_classes,
)


def _packaged(dataset: str, train_counts: tuple[int, int], test_counts: tuple[int, int]):
    """The packaged train and test lists of `dataset`, checked: (videos, abnormal) per split, no problems."""
    train = read_list(PACKAGED[dataset]["train"], dataset)
    test = read_list(PACKAGED[dataset]["test"], dataset)
    assert (len(train.videos), sum(v.label for v in train.videos)) == train_counts
    assert (len(test.videos), sum(v.label for v in test.videos)) == test_counts
    assert not train.problems and not test.problems
    return train, test


def test_packaged_ucf_lists():
    train, _ = _packaged("ucf-crime", (1610, 810), (290, 140))
    # the per-class counts the synthetic train split is proportioned by (lists.UCF_TRAIN_COUNTS) are real
    counts = Counter(c for v in train.videos for c in v.classes)
    assert counts == UCF_TRAIN_COUNTS and set(counts) == set(UCF_CLASSES)
    assert train.videos[0].name == "Abuse001_x264" and train.videos[0].classes == ("Abuse",)
    assert all(v.classes == () for v in train.videos if v.label == 0)


def test_packaged_xd_lists():
    train, test = _packaged("xd-violence", (3954, 1905), (800, 500))
    assert not train.videos[0].name.endswith("vggish")
    # the audio test list names the same videos as the per-crop RGB test list
    audio = read_list(RESOURCES / "xd_violence" / "test_videos_audio.list", "xd-violence")
    assert audio.names == test.names


def test_rtfm_windows_crlf_lists_match_urdmu_names():
    for rtfm, urdmu in (("ucf-i3d.list", "train"), ("ucf-i3d-test.list", "test")):
        raw = (RESOURCES / "ucf_crime" / rtfm).read_bytes()
        assert b"\r\n" in raw and b"G:\\" in raw  # really the published Windows form
        names = read_list(RESOURCES / "ucf_crime" / rtfm, "ucf-crime").names
        assert names == read_list(PACKAGED["ucf-crime"][urdmu], "ucf-crime").names


def test_packaged_annotations():
    ucf = read_annotations(PACKAGED["ucf-crime"]["annotations"])
    assert len(ucf) == 290 and all(a.n_frames for a in ucf.values())
    abnormal = [a for a in ucf.values() if a.windows]
    assert len(abnormal) == 140 and sum(len(a.windows) == 2 for a in abnormal) == 16
    assert ucf["Arson022_x264"].windows == ((3500, 4000),) and ucf["Arson022_x264"].n_frames == 8640
    sultani = read_annotations(RESOURCES / "ucf_crime" / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt")
    assert sultani.keys() == ucf.keys() and all(sultani[k].windows == ucf[k].windows for k in ucf)
    assert all(a.n_frames is None for a in sultani.values())
    xd = read_annotations(PACKAGED["xd-violence"]["annotations"])
    test = read_list(PACKAGED["xd-violence"]["test"], "xd-violence")
    assert set(xd) == {v.name for v in test.videos if v.label == 1}
    assert xd["v=S-7rRLrxnVQ__#1_label_B4-0-0"].windows == ((0, 1517), (1970, 3038))


def test_names_and_classes():
    assert parse_feature_name("Abuse001_x264__7.npy") == ("Abuse001_x264", 7)
    assert parse_feature_name("Abuse001_x264_i3d.npy") == ("Abuse001_x264", None)
    assert parse_feature_name("Bad.Boys.1995__#01_label_A__vggish.npy") == ("Bad.Boys.1995__#01_label_A", None)
    assert parse_feature_name("notes.txt") is None
    assert ucf_class("Normal_Videos_872_x264") == "Normal" and ucf_class("Normal_Videos308_3_x264") == "Normal"
    assert ucf_class("RoadAccidents021_x264") == "RoadAccidents" and ucf_class("Parade001_x264") is None
    assert xd_classes("Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6") == ("Car accident", "Explosion", "Shooting")
    assert xd_classes("x_label_A") == () and xd_classes("x_label_B9-0-0") is None and xd_classes("nolabel") is None


def test_windows_paths_crlf_and_per_crop_dedup(tmp_path):
    p = tmp_path / "l.list"
    p.write_bytes(b"C:\\feat\\Arson\\Arson001_x264__0.npy\r\nC:\\feat\\Arson\\Arson001_x264__1.npy\r\n"
                  b"\r\n/abs/Training_Normal_Videos_Anomaly/Normal_Videos_003_x264__0.npy\r\n")
    vl = read_list(p, "ucf-crime")
    assert vl.names == ["Arson001_x264", "Normal_Videos_003_x264"]
    assert [v.label for v in vl.videos] == [1, 0] and not vl.problems


def test_list_content_problems(tmp_path):
    p = tmp_path / "l.list"
    p.write_text("a/Abuse/Abuse001_x264__0.npy\na/Abuse/Abuse001_x264__0.npy\na/Arson/Arson002_x264__0.npy\n"
                 "a/Abuse/Abuse001_x264__1.npy\na/Parade/Parade001_x264__0.npy\na/Arson/Abuse003_x264__0.npy\n")
    problems = read_list(p, "ucf-crime").problems
    assert len(problems) == 4
    assert "l.list:2: duplicate video Abuse001_x264" in problems[0]
    assert "l.list:4: duplicate video Abuse001_x264" in problems[1]  # not consecutive: listed twice
    assert "l.list:5: unknown class for video Parade001_x264" in problems[2]
    assert "l.list:6" in problems[3] and "folder Arson" in problems[3]


def test_malformed_list_line_names_file_and_line(tmp_path):
    p = tmp_path / "bad.list"
    p.write_text("x/Abuse001_x264__0.npy\nx/Abuse001_x264.txt\n")
    with pytest.raises(ValueError, match=r"bad.list:2"):
        read_list(p, "ucf-crime")


@pytest.mark.parametrize("text, message", [
    ("Abuse028_x264.mp4  Abuse  165  240  -1  -1\nAbuse030_x264.mp4  Abuse  1275\n", r"ann.txt:2: .*pairs"),
    ("v1 10 20\nv2 10 x\n", r"ann.txt:2: .*integer"),
    ("v1 10 20\nv1 30 40\n", r"ann.txt:2: video v1 is annotated twice"),
    ("v1 30 20\n", r"ann.txt:1: invalid window"),
])
def test_malformed_annotation_names_file_and_line(tmp_path, text, message):
    a = tmp_path / "ann.txt"
    a.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_annotations(a)
