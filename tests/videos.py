"""Videos made inside the tests (no downloads): a white square moving over noise, written with PyAV.

`write_video(path, n_frames, width, height)` writes an H.264 .mp4 at 25 frames/s (`extract.demo`;
`faststart`: the index at the front, so that a file cut in half still opens and fails while decoding, as a
broken download does);
`truncate(src, dst)` keeps the first half of a file; `frames_rgb(path)` decodes every frame back as
uint8 [N, H, W, 3], the tests' own reference (independent of gsmoe_lib.extract).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_video(path: str | Path, n_frames: int, width: int = 320, height: int = 240, fps: int = 25) -> Path:
    from gsmoe_lib.extract.demo import write_demo_video

    return write_demo_video(path, n_frames, width, height, fps)


def write_audio_only(path: str | Path) -> Path:
    """An .mp4 with one audio stream and no video stream."""
    import av

    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        stream.layout = "mono"
        samples = np.zeros((1, 1024), dtype=np.float32)
        for _ in range(4):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 8000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def truncate(src: str | Path, dst: str | Path, keep: float = 0.5) -> Path:
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[:int(len(data) * keep)])
    return Path(dst)


def frames_rgb(path: str | Path) -> np.ndarray:
    """Every frame of a video as uint8 [N, H, W, 3] (PyAV's rgb24 conversion)."""
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
