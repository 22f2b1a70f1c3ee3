"""SAL-HG pickles become COCO keypoint files (32 slots); pickles that would run code do not."""

from __future__ import annotations

import json
import pickle
import pickletools
from pathlib import Path

import numpy as np
import pytest

from matchrcnn.data.deepfashion2 import ConversionError
from matchrcnn.data.safe_pickle import UnsafePickleError, load_pickle
from matchrcnn.data.salhg import convert_salhg

from .conftest import run_tool, salhg_entries, write_image, write_pickle


@pytest.mark.parametrize(("protocol", "as_array"), [(2, False), (4, True), (5, True)])
def test_entries_convert_to_coco_keypoints(tmp_path: Path, protocol: int, as_array: bool):
    images = tmp_path / "image"
    entries = salhg_entries(images, 4, as_array=as_array)
    entries.insert(2, {"name": "unused.jpg", "used": False, "points": []})
    pkl = write_pickle(tmp_path / "hd_train_person.pkl", entries, protocol)
    out = tmp_path / "person_train.json"
    summary = convert_salhg(pkl, images, out)
    assert (summary.read, summary.converted, summary.skipped, summary.unused) == (5, 4, 0, 1)
    assert summary.problems == []
    coco = json.loads(out.read_text())
    assert [(c["id"], c["name"]) for c in coco["categories"]] == [(1, "upper_garment")]
    assert coco["categories"][0]["keypoints"] == [str(i) for i in range(1, 33)]
    used = [e for e in entries if e["used"]]
    assert [image["id"] for image in coco["images"]] == [1, 2, 4, 5]  # entry index + 1
    for image, annotation, entry in zip(coco["images"], coco["annotations"], used, strict=True):
        assert image["file_name"] == entry["name"]
        assert annotation["category_id"] == 1
        points = np.asarray(entry["points"], dtype=np.float64)
        expected = np.zeros((32, 3))
        present = points[:, 2] >= 0
        expected[present, :2] = points[present, :2]
        expected[present, 2] = np.where(points[present, 2] == 1, 2, 1)
        assert annotation["keypoints"] == expected.ravel().tolist()
        assert annotation["num_keypoints"] == int(present.sum())
        x, y, w, h = annotation["bbox"]
        xs, ys = points[present, 0], points[present, 1]
        assert x <= xs.min() and y <= ys.min() and x + w >= xs.max() and y + h >= ys.max()


class _WritesAFile:
    """Unpickling this would call open(marker, "w"): code running at load time."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _named_global(data: bytes) -> str:
    """The callable a pickle names, as the unpickler will see it (module.name)."""
    strings = []
    for opcode, argument, _ in pickletools.genops(data):
        if opcode.name == "GLOBAL":
            return argument.replace(" ", ".")
        if isinstance(argument, str):
            strings.append(argument)
        if opcode.name == "STACK_GLOBAL":
            return f"{strings[-2]}.{strings[-1]}"
    raise AssertionError("no global in the pickle")


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path: Path, protocol):
    marker = tmp_path / "marker"
    images = tmp_path / "image"
    entries = salhg_entries(images, 2)
    entries[1]["points"] = _WritesAFile(marker)
    data = pickle.dumps(entries, protocol=protocol)
    pkl = tmp_path / "evil.pkl"
    pkl.write_bytes(data)
    forbidden = _named_global(data)
    assert forbidden in ("io.open", "builtins.open")
    with pytest.raises(UnsafePickleError, match=rf"evil\.pkl: refused to unpickle: it names the "
                       rf"global {forbidden}, which could run code"):
        load_pickle(pkl)
    out = tmp_path / "out.json"
    with pytest.raises(ConversionError, match=rf"global {forbidden}"):
        convert_salhg(pkl, images, out)
    assert not marker.exists()
    assert not out.exists()


def test_the_tool_refuses_it_with_a_clear_error(tmp_path: Path, capsys):
    marker = tmp_path / "marker"
    pkl = write_pickle(tmp_path / "evil.pkl", [_WritesAFile(marker)])
    assert run_tool("salhg", "--pkl", pkl, "--images", tmp_path, "--out", tmp_path / "o.json") == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {pkl}: refused to unpickle: it names the global ")
    assert not marker.exists()


def test_a_broken_pickle_is_named(tmp_path: Path):
    pkl = tmp_path / "cut.pkl"
    pkl.write_bytes(pickle.dumps([{"name": "a.jpg"}])[:-3])
    with pytest.raises(UnsafePickleError, match=r"cut\.pkl: not a readable pickle"):
        load_pickle(pkl)
    with pytest.raises(ConversionError, match=r"holds a list of entries, not a dict"):
        convert_salhg(write_pickle(tmp_path / "dict.pkl", {"name": "a"}), tmp_path,
                      tmp_path / "o.json")


def _points(**changes) -> list:
    points = [[10 + i, 10 + i, 1] for i in range(32)]
    for index, point in changes.items():
        points[int(index[1:])] = point
    return points


MALFORMED = [
    ("not a dict", "must be a dict, got str"),
    ({"name": "extra.jpg", "used": True}, "missing key(s) points"),
    ({"name": "", "used": True, "points": _points()}, "name must be a non-empty string"),
    ({"name": "extra.jpg", "used": "yes", "points": _points()}, "used must be True or False"),
    ({"name": "extra.jpg", "used": True, "points": _points()[:31]},
     "points has 31 landmarks, expected 32"),
    ({"name": "extra.jpg", "used": True, "points": _points(p4=[1, 2])},
     "points[4] must be [x, y, attribute]"),
    ({"name": "extra.jpg", "used": True, "points": _points(p5=[1, "a", 1])},
     "points[5] y is not a number: 'a'"),
    ({"name": "extra.jpg", "used": True, "points": _points(p6=[1, 2, 2])},
     "points[6] attribute must be 1, 0 or -1, got 2"),
    ({"name": "extra.jpg", "used": True, "points": _points(p7=[999, 2, 0])},
     "landmark 8 at (999, 2) lies outside the 64x64 image"),
    ({"name": "extra.jpg", "used": True, "points": [[0, 0, -1]] * 32},
     "no labelled landmark: no box can be derived"),
    ({"name": "missing.jpg", "used": True, "points": _points()}, "image file missing: "),
    ({"name": "00001_00.jpg", "used": True, "points": _points()},
     "image 00001_00.jpg was already converted from entry 1"),
]


@pytest.mark.parametrize(("entry", "reason"), MALFORMED)
def test_a_malformed_entry_is_named_skipped_and_counted(tmp_path: Path, capsys, entry, reason):
    images = tmp_path / "image"
    entries = salhg_entries(images, 2)  # images 00000_00.jpg and 00001_00.jpg
    write_image(images / "extra.jpg", 64, 64)
    pkl = write_pickle(tmp_path / "train.pkl", [*entries, entry])
    out = tmp_path / "out.json"
    assert run_tool("salhg", "--pkl", pkl, "--images", images, "--out", out) == 0
    captured = capsys.readouterr()
    [problem] = captured.err.splitlines()
    assert problem.startswith(f"problem: {pkl}: entry 2: {reason}")
    assert f"{pkl}: 3 entries: 2 converted, 1 skipped; 1 problems reported" in captured.out
    assert len(json.loads(out.read_text())["images"]) == 2


def test_strict_fails_and_writes_nothing(tmp_path: Path, capsys):
    images = tmp_path / "image"
    pkl = write_pickle(tmp_path / "train.pkl", [*salhg_entries(images, 2), "not a dict"])
    out = tmp_path / "out.json"
    assert run_tool("salhg", "--pkl", pkl, "--images", images, "--out", out, "--strict") == 1
    assert f"error: --strict: 1 problem(s) in {pkl}" in capsys.readouterr().err
    assert not out.exists()


def test_code_hidden_in_a_numpy_object_array_is_refused(tmp_path: Path):
    marker = tmp_path / "marker"
    hidden = np.array([1, _WritesAFile(marker)], dtype=object)
    pkl = write_pickle(tmp_path / "hidden.pkl", [{"name": "a.jpg", "used": True, "points": hidden}])
    with pytest.raises(UnsafePickleError, match=r"refused to unpickle: it names the global "
                       r"(io|builtins)\.open"):
        load_pickle(pkl)
    assert not marker.exists()
