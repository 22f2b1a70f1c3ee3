"""What --input names and where each picture goes."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from matchrcnn.inference.inputs import expand_inputs, plan_outputs, video_output
from matchrcnn.utils.errors import UsageError


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(path)
    return path


def test_files_folders_and_globs_each_once_in_order(tmp_path: Path) -> None:
    a = _image(tmp_path / "a.jpg")
    nested = _image(tmp_path / "folder" / "sub" / "b.png")
    top = _image(tmp_path / "folder" / "c.jpg")
    (tmp_path / "folder" / "notes.txt").write_text("not an image")
    found, problems = expand_inputs([str(a), str(tmp_path / "folder"), str(tmp_path / "*.jpg"),
                                     str(tmp_path / "missing.jpg"), str(tmp_path / "*.gif")])
    assert found == [(a, None), (top, tmp_path / "folder"), (nested, tmp_path / "folder")]
    assert problems == [f"{tmp_path / 'missing.jpg'}: no such file or folder",
                        f"{tmp_path / '*.gif'}: matches no file"]


def test_a_folder_keeps_its_layout_under_the_output(tmp_path: Path) -> None:
    """Two photos of one name in different sub-folders get different pictures; ids number the
    inputs when their names are not DeepFashion2's numbers."""
    one, two = _image(tmp_path / "in" / "x" / "p.jpg"), _image(tmp_path / "in" / "y" / "p.jpg")
    found, _ = expand_inputs([str(tmp_path / "in")])
    planned = plan_outputs(found, tmp_path / "out")
    assert [(p.path, p.output, p.image_id) for p in planned] == [
        (one, tmp_path / "out" / "x" / "p.png", 1), (two, tmp_path / "out" / "y" / "p.png", 2)]


def test_deepfashion2_names_keep_their_numbers_as_image_ids(tmp_path: Path) -> None:
    found, _ = expand_inputs([str(_image(tmp_path / "000120.jpg")),
                              str(_image(tmp_path / "000007.jpg"))])
    planned = plan_outputs(found, tmp_path / "out")
    assert [p.image_id for p in planned] == [120, 7]


def test_one_input_may_go_to_a_png_file(tmp_path: Path) -> None:
    found, _ = expand_inputs([str(_image(tmp_path / "photo.jpg"))])
    (planned,) = plan_outputs(found, tmp_path / "drawn.png")
    assert planned.output == tmp_path / "drawn.png"


@pytest.mark.parametrize(("names", "output", "message"), [
    (["a.jpg", "b.jpg"], "out.png", "is one file but the inputs name 2 images"),
    (["a.jpg"], "out.jpg", "a file output must end in .png"),
    (["a.jpg", "sub/a.jpg"], "out", "would both be written to"),
    (["a.png"], "a.png", "would overwrite its input"),
])
def test_outputs_that_cannot_work_are_refused(tmp_path: Path, names: list[str], output: str,
                                              message: str) -> None:
    found, _ = expand_inputs([str(_image(tmp_path / name)) for name in names])
    with pytest.raises(UsageError, match=message):
        plan_outputs(found, tmp_path / output)


def test_a_video_goes_to_its_file_or_into_a_folder(tmp_path: Path) -> None:
    assert video_output(tmp_path / "clip.avi", tmp_path / "out") == tmp_path / "out" / "clip.mp4"
    assert video_output(tmp_path / "clip.avi", tmp_path / "x.mp4") == tmp_path / "x.mp4"
    with pytest.raises(UsageError, match="overwrite its input"):
        video_output(tmp_path / "clip.mp4", tmp_path / "clip.mp4")
