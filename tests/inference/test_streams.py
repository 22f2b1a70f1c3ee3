"""Several results files from one pass: each file whole at the end, or none of them new."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from matchrcnn.inference.streams import ResultStreams


def _paths(tmp_path: Path) -> dict[str, Path]:
    return {"bbox": tmp_path / "results_bbox.json", "segm": tmp_path / "results_segm.json"}


def test_entries_arrive_in_their_files_in_order(tmp_path: Path) -> None:
    paths = _paths(tmp_path)
    with ResultStreams(paths) as streams:
        for image_id in range(1, 40):
            streams.add("bbox", [{"image_id": image_id, "score": 0.5}] * 2)
            streams.add("segm", [{"image_id": image_id}])
    assert [e["image_id"] for e in json.loads(paths["bbox"].read_text())] == [
        i for i in range(1, 40) for _ in range(2)]
    assert len(json.loads(paths["segm"].read_text())) == 39
    assert streams.counts == {"bbox": 78, "segm": 39}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results_bbox.json",
                                                           "results_segm.json"]


def test_a_failed_pass_leaves_the_previous_files(tmp_path: Path) -> None:
    paths = _paths(tmp_path)
    paths["bbox"].write_text("[]")
    with pytest.raises(RuntimeError, match="the model broke"), ResultStreams(paths) as streams:
        streams.add("bbox", [{"image_id": 1}])
        raise RuntimeError("the model broke")
    assert paths["bbox"].read_text() == "[]"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results_bbox.json"]


def test_a_file_that_cannot_be_written_stops_the_pass_and_every_file(tmp_path: Path) -> None:
    """A NaN (refused by write_results) in one file: the error reaches the producer, and the
    other file is abandoned too, however many entries are queued after it."""
    paths = _paths(tmp_path)
    with pytest.raises(ValueError, match="Out of range float"), ResultStreams(paths) as streams:
        streams.add("bbox", [{"score": float("nan")}])
        for _ in range(1000):
            streams.add("segm", [{"image_id": 1}])
            streams.add("bbox", [{"image_id": 1}])
    assert list(tmp_path.iterdir()) == []
