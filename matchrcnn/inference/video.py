"""Video in and out through OpenCV (a dependency already; its wheels bundle FFmpeg).

Frames come out as RGB arrays in order; the MP4 is written to a temporary file beside the target
and renamed over it only once every frame is in, so an interrupted run leaves the previous file
(or none), never half a video. MPEG-4 Part 2 (``mp4v``) is the codec OpenCV's wheels can write
everywhere (H.264 is not in them); its frames need even sides, so a frame of odd width or height
gets one black column or row.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from matchrcnn.data.images import ImageInputError

FOURCC = "mp4v"
DEFAULT_FPS = 30.0
"""Frame rate written when the input's cannot be read from its header."""


class VideoInputError(ImageInputError):
    """A video file that cannot be read; the message names the file and what is wrong."""


@dataclass(frozen=True)
class VideoInfo:
    """The header's frame rate, frame count (an estimate some containers get wrong; 0 when
    unknown) and frame size."""

    fps: float
    frames: int
    width: int
    height: int


@contextmanager
def open_video(path: str | os.PathLike) -> Iterator[tuple[VideoInfo, Iterator[np.ndarray]]]:
    """The video's header and its frames, (H, W, 3) uint8 RGB, in order; VideoInputError for a
    missing file or one FFmpeg cannot open."""
    path = Path(path)
    if not path.is_file():
        raise VideoInputError(f"{path}: no such file")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoInputError(f"{path}: not a video OpenCV can read (unknown format, or "
                                  f"damaged)")
        fps = capture.get(cv2.CAP_PROP_FPS)
        info = VideoInfo(fps if fps > 0 else DEFAULT_FPS,
                         max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))),
                         int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                         int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        yield info, _frames(capture)
    finally:
        capture.release()


def _frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


class Mp4Writer:
    """Frames of one size, RGB, appended in order (see ``write_mp4``)."""

    def __init__(self, writer: cv2.VideoWriter, size: tuple[int, int]) -> None:
        self._writer, self._size = writer, size
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        height, width = frame.shape[:2]
        if (width + width % 2, height + height % 2) != self._size:
            raise ValueError(f"frame {self.frames} is {width}x{height}, the video "
                             f"{self._size[0]}x{self._size[1]}")
        frame = np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)))
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1


@contextmanager
def write_mp4(path: str | os.PathLike, fps: float, width: int, height: int,
              ) -> Iterator[Mp4Writer]:
    """An MP4 at ``path`` of frames ``width`` x ``height``, whole once the block ends without an
    error, untouched (the previous file kept) otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix,
                                         dir=path.parent)
    os.close(handle)
    size = (width + width % 2, height + height % 2)
    writer = cv2.VideoWriter(temporary, cv2.VideoWriter_fourcc(*FOURCC), fps, size)
    try:
        if not writer.isOpened():
            raise OSError(f"OpenCV cannot write {FOURCC} video to {temporary}: its FFmpeg "
                          f"backend is missing")
        yield Mp4Writer(writer, size)
        writer.release()
        os.replace(temporary, path)
    finally:
        writer.release()
        if os.path.exists(temporary):
            os.unlink(temporary)
