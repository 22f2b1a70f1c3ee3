"""Atomic writes: whole or not at all, with the permissions of a plainly created file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from matchrcnn.utils.atomic import atomic_open, write_text_atomic


def test_a_written_file_has_the_mode_a_plain_file_gets(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    written = tmp_path / "atomic.txt"
    write_text_atomic(written, "x")
    assert written.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_a_failed_write_leaves_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("before")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write("half")
        raise RuntimeError("killed")
    assert target.read_text() == "before"
    assert os.listdir(tmp_path) == ["file.txt"]
