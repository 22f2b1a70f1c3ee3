"""MP4 in and out: every frame, in order, at its size; a video appears whole or not at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from matchrcnn.inference.video import VideoInputError, open_video, write_mp4


def _frames(count: int, height: int, width: int) -> list[np.ndarray]:
    """Flat frames of distinct grey levels, which MPEG-4 keeps to within a few levels."""
    return [np.full((height, width, 3), 20 + 30 * index, np.uint8) for index in range(count)]


def test_frames_come_back_in_order(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    with write_mp4(path, 5.0, 64, 48) as video:
        for frame in _frames(7, 48, 64):
            video.write(frame)
    assert video.frames == 7
    with open_video(path) as (info, frames):
        read = list(frames)
    assert (info.fps, info.frames, info.width, info.height) == (5.0, 7, 64, 48)
    assert len(read) == 7
    levels = [float(frame.mean()) for frame in read]
    assert np.allclose(levels, [20 + 30 * i for i in range(7)], atol=4)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_an_odd_sized_frame_gets_one_black_column_and_row(tmp_path: Path) -> None:
    path = tmp_path / "odd.mp4"
    with write_mp4(path, 5.0, 63, 47) as video:
        video.write(np.full((47, 63, 3), 200, np.uint8))
    with open_video(path) as (_, frames):
        (frame,) = list(frames)
    assert frame.shape == (48, 64, 3)
    assert frame[:47, :63].mean() > 190


def test_an_interrupted_video_leaves_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"previous")
    with pytest.raises(KeyboardInterrupt), write_mp4(path, 5.0, 32, 32) as video:
        video.write(np.zeros((32, 32, 3), np.uint8))
        raise KeyboardInterrupt
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_a_frame_of_another_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="frame 0 is 32x30, the video 32x32"), write_mp4(
            tmp_path / "clip.mp4", 5.0, 32, 32) as video:
        video.write(np.zeros((30, 32, 3), np.uint8))


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such file"), (b"not a video", "not a video OpenCV can read")])
def test_an_unreadable_video_is_named(tmp_path: Path, content: bytes | None,
                                      message: str) -> None:
    path = tmp_path / "clip.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoInputError, match=f"clip.mp4: {message}"), open_video(path):
        pass
