"""A generated clip for trying the pipeline without a video of one's own: a white square moving over noise.

`write_demo_video(path, n_frames, width, height)` writes an H.264 .mp4 with PyAV (`faststart`: the index at
the front of the file). Notebook 60 uses it as its default video and the tests make their inputs with it.
Features of this clip (and scores of them) mean nothing: it only shows that every step runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def square_over_noise(i: int, width: int, height: int, seed: int = 0, noise: bool = True) -> np.ndarray:
    """Frame i: uint8 [H, W, 3] noise (or, noise=False, a flat grey that compresses to almost nothing, for long
    videos) with a white square that moves 4 px to the right per frame."""
    if noise:
        img = np.random.default_rng(seed + i).integers(0, 256, (height, width, 3), dtype=np.uint8)
    else:
        img = np.full((height, width, 3), 96, dtype=np.uint8)
    side = max(height // 6, 8)
    x = (8 + 4 * i) % max(width - side, 1)
    img[8:8 + side, x:x + side] = 255
    return img


def write_demo_video(path: str | Path, n_frames: int, width: int = 320, height: int = 240, fps: int = 25,
                     seed: int = 0, noise: bool = True) -> Path:
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18", "preset": "ultrafast"}
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(square_over_noise(i, width, height, seed, noise), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
