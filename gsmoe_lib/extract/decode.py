"""Decoding: a video file -> resized RGB frames -> 16-frame snippets, streamed on a background thread.

PyAV (pinned; its wheels carry FFmpeg) decodes the frames at the video's own rate (no resampling) and each
frame is resized at once as the recipe says (`recipes.resize_frame`), so memory holds a few snippets, never
the video: a 2-hour film streams through in bounded memory.

N, the frame count, is the number of frames actually decoded, never the container's header (which can be
wrong: OpenCV #17257, decord #373). The snippet count follows from N and the snippet rule (`recipes`).

`Snippets(path, recipe, rule)` is an iterator of uint8 [16, H', W', 3] snippets; after the last one,
`.frames_decoded`, `.fps`, `.size` (W, H of the source) and `.n_snippets` hold what was found. Decoding runs on
a daemon thread that fills a bounded queue while the model works on the previous snippets.

Bad input is a `VideoError` (a ValueError: one line, exit status 2) naming the file:
- not a video (FFmpeg cannot open it), no video stream;
- a corrupt or truncated file: FFmpeg fails while decoding (the error names the frame where it failed), or
  the stream ends well before the frame count its header promises (more than 1 % and 1 frame short; the
  error names the last frame decoded; a header a frame or two off is tolerated, N is what was decoded);
- fewer than 16 frames (no complete snippet).
"""

from __future__ import annotations

import queue
import threading
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from gsmoe_lib.extract.recipes import SNIPPET_FRAMES, Recipe, fill_snippet, n_snippets, resize_frame

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")
QUEUE_SNIPPETS = 4  # snippets decoded ahead of the model (each 16 x 256 x 340 x 3 bytes ~ 4 MB for 340 x 256)


class VideoError(ValueError):
    """A video that cannot be turned into snippets (a user error)."""


def is_video_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _ffmpeg_errors():
    import av

    return (av.FFmpegError,) if hasattr(av, "FFmpegError") else (av.error.FFmpegError,)


def open_video(path: str | Path):
    """(container, video stream) of a file; VideoError when it is not a video or has no video stream."""
    import av

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: video file not found")
    try:
        container = av.open(str(path))
    except _ffmpeg_errors() as exc:
        raise VideoError(f"{path}: not a video FFmpeg can read ({' '.join(str(exc).split())})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: has no video stream")
    return container, container.streams.video[0]


class Snippets:
    """Iterate the 16-frame snippets of a video, resized per `recipe`, under snippet rule `rule`."""

    _END = object()

    def __init__(self, path: str | Path, recipe: Recipe, rule: str, queue_size: int = QUEUE_SNIPPETS) -> None:
        self.path = Path(path)
        self.recipe = recipe
        self.rule = rule
        n_snippets(SNIPPET_FRAMES, rule)  # validates the rule before any work
        self.frames_decoded = 0
        self.fps: float | None = None
        self.size: tuple[int, int] | None = None  # (W, H) of the source frames
        self.header_frames = 0  # the container's claim, used only to detect a truncated file
        self.n_snippets = 0
        self._container, self._stream = open_video(self.path)
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(Fraction(rate)) if rate else None
        self.header_frames = int(self._stream.frames or 0)
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._decode, name=f"decode {self.path.name}", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _decode(self) -> None:
        try:
            self._put(self._snippets_or_error())
        except BaseException as exc:  # noqa: BLE001 - the consumer re-raises it on its own thread
            self._put(exc)
        finally:
            self._container.close()

    def _snippets_or_error(self):
        """Decode everything, putting full snippets on the queue; return the end marker or raise."""
        self._stream.thread_type = "AUTO"  # FFmpeg's own frame / slice threads
        pending: list[np.ndarray] = []
        try:
            for frame in self._container.decode(self._stream):
                if self._stop.is_set():
                    return self._END
                image = frame.to_image()  # PIL RGB, W x H
                if self.size is None:
                    self.size = image.size
                pending.append(resize_frame(image, self.recipe))  # uint8 [H', W', 3]
                self.frames_decoded += 1
                if len(pending) == SNIPPET_FRAMES:
                    self.n_snippets += 1
                    if not self._put(np.stack(pending)):
                        return self._END
                    pending = []
        except _ffmpeg_errors() as exc:
            raise VideoError(f"{self.path}: corrupt video: decoding failed at frame {self.frames_decoded} "
                             f"({' '.join(str(exc).split())})") from None
        # The header is only a witness here (it can be a little off: OpenCV #17257): N stays the frames decoded,
        # but a stream that ends well short of it (more than 1 % and 1 frame) was cut off or damaged.
        if self.header_frames and self.frames_decoded < self.header_frames - max(1, self.header_frames // 100):
            raise VideoError(f"{self.path}: truncated or corrupt video: decoding stopped after frame "
                             f"{self.frames_decoded - 1} of the {self.header_frames} frames its header lists")
        if self.frames_decoded < SNIPPET_FRAMES:
            raise VideoError(f"{self.path}: {self.frames_decoded} frames decoded, fewer than the "
                             f"{SNIPPET_FRAMES} frames of one snippet")
        if pending and self.rule == "ceil":
            self.n_snippets += 1
            self._put(np.stack(fill_snippet(pending, self.recipe.padding)))
        return self._END

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            while True:
                item = self._queue.get()
                if item is self._END:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.close()
        if self.n_snippets != n_snippets(self.frames_decoded, self.rule):  # T follows from N decoded
            raise RuntimeError(f"{self.path}: {self.n_snippets} snippets for {self.frames_decoded} frames under "
                               f"rule {self.rule}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def video_info(path: str | Path) -> dict:
    """What the container says (the header: width, height, frame rate, claimed frames); decodes nothing."""
    container, stream = open_video(path)
    try:
        rate = stream.average_rate or stream.guessed_rate
        return {"width": stream.codec_context.width, "height": stream.codec_context.height,
                "fps": float(Fraction(rate)) if rate else None, "header_frames": int(stream.frames or 0)}
    finally:
        container.close()


def frames_at(path: str | Path, indices: list[int], max_side: int = 160) -> dict[int, np.ndarray]:
    """Thumbnails (uint8 [h, w, 3], longer side `max_side`) of the frames at `indices`, in one streaming pass."""
    wanted = set(indices)
    out: dict[int, np.ndarray] = {}
    container, stream = open_video(path)
    try:
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                img = frame.to_image()
                img.thumbnail((max_side, max_side))
                out[i] = np.asarray(img)
                if len(out) == len(wanted):
                    break
    finally:
        container.close()
    return out
