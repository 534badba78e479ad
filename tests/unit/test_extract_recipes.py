"""`gsmoe extract`'s decoding and crops, without a model: snippet counts, crop windows, mirrors, bad videos.

The videos are made here with PyAV (tests/videos.py); the expected crops are computed independently:
the frames decoded by the test itself, resized with Pillow, cut at window coordinates written out below.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gsmoe_lib.extract.decode import Snippets, VideoError
from gsmoe_lib.extract.features import crop_batches
from gsmoe_lib.extract.recipes import fill_snippet, get_recipe, n_snippets
from videos import frames_rgb, truncate, write_audio_only, write_video

pytest.importorskip("av")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """{(frames, width, height): path} for the sizes and lengths the conventions disagree on."""
    root = tmp_path_factory.mktemp("videos")
    out = {}
    for n, (w, h) in [(15, (320, 240)), (16, (320, 240)), (17, (320, 240)), (33, (320, 240)), (16, (1280, 720))]:
        out[(n, w, h)] = write_video(root / f"square_{n}_{w}x{h}.mp4", n, w, h)
    return out


@pytest.mark.parametrize("n, floor, ceil", [(16, 1, 1), (17, 1, 2), (33, 2, 3), (32, 2, 2), (15, 0, 1)])
def test_snippet_count_rules(n, floor, ceil):
    assert n_snippets(n, "floor") == floor
    assert n_snippets(n, "ceil") == ceil


@pytest.mark.parametrize("n", [16, 17, 33])
@pytest.mark.parametrize("rule", ["floor", "ceil"])
def test_T_follows_the_frames_decoded(clips, n, rule):
    snippets = Snippets(clips[(n, 320, 240)], get_recipe("centre"), rule)
    got = list(snippets)
    assert snippets.frames_decoded == n
    assert len(got) == {"floor": n // 16, "ceil": -(-n // 16)}[rule]
    assert all(s.shape == (16, 256, 340, 3) and s.dtype == np.uint8 for s in got)


def test_ceil_fills_the_last_snippet_with_the_last_frame(clips):
    got = list(Snippets(clips[(17, 320, 240)], get_recipe("urdmu-10crop"), "ceil"))
    assert len(got) == 2
    assert all(np.array_equal(got[1][i], got[1][0]) for i in range(16))  # frame 16, repeated
    assert not np.array_equal(got[0][15], got[1][0])


def test_fill_snippet_repeat_and_loop():
    frames = [np.full((2, 2, 3), i, np.uint8) for i in range(3)]
    assert [int(f[0, 0, 0]) for f in fill_snippet(frames, "repeat-last")] == [0, 1, 2] + [2] * 13
    assert [int(f[0, 0, 0]) for f in fill_snippet(frames, "loop")] == [i % 3 for i in range(16)]


def _resized(path, size, resample):
    """The test's own resize: every frame decoded, resized with Pillow to `size` (W, H)."""
    return np.stack([np.asarray(Image.fromarray(f).resize(size, resample)) for f in frames_rgb(path)])


LANCZOS, BILINEAR = Image.Resampling.LANCZOS, Image.Resampling.BILINEAR
# recipe, source size -> (resized W, H), the filter, the (top, left) of each window in file order, mirrored flags
CASES = {
    ("urdmu-10crop", (320, 240)): ((340, 256), LANCZOS,
                                   [(0, 0), (0, 116), (16, 58), (32, 0), (32, 116)], True),
    ("deepmil-10crop", (320, 240)): ((340, 256), LANCZOS,
                                     [(16, 58), (0, 0), (0, 116), (32, 0), (32, 116)], True),
    ("rtfm-10crop", (320, 240)): ((341, 256), BILINEAR,  # short side 256: 320 x 240 -> 341 x 256
                                  [(0, 0), (0, 117), (32, 0), (32, 117), (16, 58)], True),
    ("rtfm-10crop", (1280, 720)): ((455, 256), BILINEAR,  # 1280 x 720 -> 455 x 256; centre left round(115.5)
                                   [(0, 0), (0, 231), (32, 0), (32, 231), (16, 116)], True),
    ("xd-5crop", (1280, 720)): ((455, 256), BILINEAR,
                                [(16, 116), (0, 0), (0, 231), (32, 0), (32, 231)], False),
    ("centre", (1280, 720)): ((340, 256), LANCZOS, [(16, 58)], False),
}


@pytest.mark.parametrize("recipe, size", list(CASES))
def test_each_crop_is_the_window_of_the_independently_resized_frames(clips, recipe, size):
    (rw, rh), resample, corners, mirrored = CASES[(recipe, size)]
    path = clips[(16, *size)]
    expected_frames = _resized(path, (rw, rh), resample)  # [16, H', W', 3]
    [(crops, names)] = list(crop_batches(Snippets(path, get_recipe(recipe), "floor"), get_recipe(recipe)))
    assert crops.shape == (len(corners) * (2 if mirrored else 1), 16, 224, 224, 3)
    for c, (top, left) in enumerate(corners):
        window = expected_frames[:, top:top + 224, left:left + 224]
        # Pillow's resize is deterministic, so the crops match exactly
        np.testing.assert_array_equal(crops[c], window, err_msg=f"{recipe} crop {c} ({names[c]})")
    if mirrored:
        flipped = expected_frames[:, :, ::-1]  # the mirrored frame
        for c, (top, left) in enumerate(corners):
            np.testing.assert_array_equal(crops[c + len(corners)], flipped[:, top:top + 224, left:left + 224])


@pytest.mark.parametrize("recipe, mirror_of", [("urdmu-10crop", {5: 1, 6: 0, 7: 2, 8: 4, 9: 3}),
                                               ("rtfm-10crop", {5: 1, 6: 0, 7: 3, 8: 2, 9: 4})])
def test_mirrored_crops_are_mirror_images(clips, recipe, mirror_of):
    """Crop 5 (top-left of the mirrored frame) is crop 1 (top-right) mirrored, and so on."""
    [(crops, _)] = list(crop_batches(Snippets(clips[(16, 320, 240)], get_recipe(recipe), "floor"), get_recipe(recipe)))
    for m, c in mirror_of.items():
        if recipe == "rtfm-10crop" and m == 9:
            continue  # 341 - 224 is odd: the centre is not its own mirror image there
        np.testing.assert_array_equal(crops[m], crops[c][:, :, ::-1], err_msg=f"crop {m} vs crop {c} mirrored")


def test_bad_videos_are_one_clear_error(clips, tmp_path):
    with pytest.raises(VideoError, match="fewer than the 16 frames"):
        list(Snippets(clips[(15, 320, 240)], get_recipe("centre"), "ceil"))
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    with pytest.raises(VideoError, match=f"{text}: not a video"):
        Snippets(text, get_recipe("centre"), "ceil")
    with pytest.raises(VideoError, match="has no video stream"):
        Snippets(write_audio_only(tmp_path / "sound.mp4"), get_recipe("centre"), "ceil")
    cut = truncate(clips[(33, 320, 240)], tmp_path / "cut.mp4")
    with pytest.raises(VideoError, match=r"cut\.mp4: (truncated or )?corrupt video: decoding (stopped after|failed at) frame \d+"):
        list(Snippets(cut, get_recipe("centre"), "ceil"))
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        Snippets(tmp_path / "missing.mp4", get_recipe("centre"), "ceil")
