"""How a retrieval tool's run ends: the project's input errors as one line and exit code 1, every
other exception (a bug) with its traceback."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from matchrcnn.config import ConfigError
from matchrcnn.data.catalog import DatasetFilesError
from matchrcnn.data.images import read_image
from matchrcnn.evaluation.entries import EntriesError
from matchrcnn.modeling.weights import WeightsError
from matchrcnn.retrieval.cli import EXIT_ERROR, index_config, run_tool
from matchrcnn.retrieval.gallery import GalleryError
from matchrcnn.retrieval.index import FaissIndexError
from matchrcnn.retrieval.sources import resolve_sources
from matchrcnn.utils.errors import UsageError
from tests.retrieval.conftest import new_gallery

REPO = Path(__file__).resolve().parents[2]


def _raise(error: BaseException):
    def run() -> int:
        raise error
    return run


@pytest.mark.parametrize("error", [
    UsageError("--topk must be at least 1, got 0"),
    ConfigError("config file not found: c.yaml"),
    DatasetFilesError("dataset 'synthetic_train': datasets/synthetic/train.json does not exist."),
    GalleryError("g holds no gallery (gallery.sqlite is missing):\n  build one first"),
    FaissIndexError("bad.faiss: not a readable FAISS index"),
    WeightsError("MODEL.WEIGHTS names w.pth, which does not exist"),
    EntriesError("results.json: entry 3 has no score"),
])
def test_input_errors_are_one_line_and_exit_1(error: Exception, capsys) -> None:
    assert run_tool(_raise(error)) == EXIT_ERROR
    expected = " ".join(part.strip() for part in str(error).splitlines())
    assert capsys.readouterr().err == f"error: {expected}\n"


def test_the_projects_own_raisers_are_reported_as_input_errors(tmp_path: Path, capsys) -> None:
    """What the tools call on a user's arguments raises the project's types, not bare ones."""
    taken = tmp_path / "taken"
    taken.write_text("a file, not a directory")
    for run, message in [
        (lambda: read_image(tmp_path / "nowhere.jpg"), f"{tmp_path / 'nowhere.jpg'}: no such"),
        (lambda: index_config(None, ["nprobe=many"]), "--index-setting 'nprobe=many': expected"),
        (lambda: index_config("hnsw", ["depth=3"]), "unknown index settings ['depth']"),
        (lambda: resolve_sources(str(tmp_path / "none")), f"--images {tmp_path / 'none'}: "
                                                          "neither a folder"),
        (lambda: new_gallery(taken / "gallery"), f"gallery {taken / 'gallery'}: cannot create "
                                                 "the directory (Not a directory)"),
    ]:
        assert run_tool(run) == EXIT_ERROR
        error = capsys.readouterr().err
        assert error.startswith(f"error: {message}") and error.count("\n") == 1, error


@pytest.mark.parametrize("error", [
    ValueError("zip() argument 2 is shorter than argument 1"),
    ValueError("operands could not be broadcast together with shapes (3,) (4,)"),
    OSError(5, "Input/output error"),
    FileNotFoundError(2, "No such file or directory"),
    sqlite3.OperationalError("database disk image is malformed"),
    KeyError("boxes"),
])
def test_any_other_exception_is_a_bug_and_propagates(error: Exception, capsys) -> None:
    with pytest.raises(type(error)) as raised:
        run_tool(_raise(error))
    assert raised.value is error
    assert "error:" not in capsys.readouterr().err


def test_a_bug_in_a_tool_prints_its_traceback(tmp_path: Path) -> None:
    """tools/build_gallery.py with its source listing broken as a bug would break it."""
    script = (
        "import runpy, sys\n"
        "import matchrcnn.retrieval.sources as sources\n"
        "def broken(images):\n"
        "    raise ValueError('zip() argument 2 is shorter than argument 1')\n"
        "sources.resolve_sources = broken\n"
        f"sys.argv = ['build_gallery.py', '--config-file', 'c.yaml', '--weights', 'w.pth', "
        f"'--images', {str(tmp_path)!r}, '--out', {str(tmp_path / 'g')!r}]\n"
        "runpy.run_path('tools/build_gallery.py', run_name='__main__')\n")
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                         text=True)
    assert run.returncode == 1
    assert run.stderr.startswith("Traceback (most recent call last):")
    assert "in broken" in run.stderr
    assert run.stderr.rstrip().endswith("ValueError: zip() argument 2 is shorter than argument 1")
    assert "error: " not in run.stderr
