"""Frame-level ground truth of one test video, built to the length of its own features.

Scores are per snippet of 16 frames and are repeated x16 for evaluation, so a video with T snippets
is evaluated on T*16 frames. How many snippets a video of n frames yields depends on the feature
extractor, and the releases disagree (REFERENCE §3, the field's most reported problem):

    "floor"    T = floor(n / 16)                                   UR-DMU / I3D extractors
    "ceil"     T = ceil(n / 16)                                    RTFM
    "deepmil"  T = floor(n / 16), one fewer when 16 divides n      DeepMIL

so a single concatenated ground-truth file only fits features of one convention. Here the labels of
each video are built to its own T*16 frames from its annotation windows, never read from such a file.

Decisions (the papers are silent; each is a parameter):

- Windows are half-open: a window (s, e) marks frames s, s+1, ..., e-1, as Python slices and VadCLIP's
  ground-truth builder do (`end_inclusive=True` marks frame e as well).
- With a frame count (UR-DMU's annotation format), T must match one of the conventions above for that
  count, otherwise the features do not belong to the annotated video (error naming the video and the
  file). Windows may end a little past the frame count (the official file has five windows ending 1-2
  frames past it); up to `tolerance` frames (default 16, one snippet) past the end is accepted.
- Without a frame count, a window may end up to `tolerance` frames past T*16 (the last, partial
  snippet); further is an error naming the video.
- Frames past T*16 are cut off; frames of the last snippet not covered by the video stay 0.
"""

from __future__ import annotations

import numpy as np

from gsmoe_lib.data.lists import Annotation

SNIPPET_FRAMES = 16
CONVENTIONS = ("floor", "ceil", "deepmil")


def expected_snippets(n_frames: int, convention: str) -> int:
    """T for a video of `n_frames` frames under a snippet-count convention."""
    if convention == "floor":
        return n_frames // SNIPPET_FRAMES
    if convention == "ceil":
        return -(-n_frames // SNIPPET_FRAMES)
    if convention == "deepmil":
        return n_frames // SNIPPET_FRAMES - (1 if n_frames % SNIPPET_FRAMES == 0 else 0)
    raise ValueError(f"unknown snippet convention {convention!r}; expected one of {', '.join(CONVENTIONS)}")


def detect_convention(n_frames: int, n_snippets: int, video: str = "", source: str = "") -> str:
    """The first convention (in CONVENTIONS order) under which `n_frames` frames give `n_snippets`.

    Raises ValueError naming the video (and the annotation file) when none does.
    """
    for convention in CONVENTIONS:
        if expected_snippets(n_frames, convention) == n_snippets:
            return convention
    options = ", ".join(f"{c} {expected_snippets(n_frames, c)}" for c in CONVENTIONS)
    where = f" (frame count from {source})" if source else ""
    raise ValueError(
        f"video {video}: features have T={n_snippets} snippets but the video has {n_frames} frames{where}; "
        f"expected T = {options}. The features do not match this video"
    )


def frame_labels(
    annotation: Annotation | None,
    n_snippets: int,
    tolerance: int = SNIPPET_FRAMES,
    end_inclusive: bool = False,
    video: str = "",
) -> np.ndarray:
    """Frame labels [T*16] uint8 (1 = anomalous) of a video with `n_snippets` snippets.

    `annotation` None (or without windows) gives all zeros: a normal video. Raises ValueError naming
    the video and the annotation file when the frame count does not fit T or a window ends too far
    past the end (see the module docstring).
    """
    if n_snippets <= 0:
        raise ValueError(f"video {video}: features have T={n_snippets} snippets")
    n = n_snippets * SNIPPET_FRAMES
    labels = np.zeros(n, dtype=np.uint8)  # [T*16]
    if annotation is None:
        return labels
    video = video or annotation.name
    where = f"{annotation.source}:{annotation.line}"
    if annotation.n_frames is not None:
        detect_convention(annotation.n_frames, n_snippets, video, where)
        limit, what = annotation.n_frames, f"its {annotation.n_frames} frames"
    else:
        limit, what = n, f"T*16 = {n} frames of its features"
    for start, end in annotation.windows:
        if end > limit + tolerance:
            raise ValueError(
                f"video {video}: annotation window ({start}, {end}) in {where} ends past {what} "
                f"(tolerance {tolerance} frames)"
            )
        stop = end + 1 if end_inclusive else end
        labels[min(start, n):min(stop, n)] = 1
    return labels
