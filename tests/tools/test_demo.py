"""tools/demo.py as a user runs it: a folder of synthetic photos to PNGs, a short video made of
them to an MP4, the official results files beside them, and unreadable inputs reported, skipped
and counted without losing what was written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from matchrcnn.config import setup_cfg
from matchrcnn.evaluation.box_iou import coco_box_iou
from matchrcnn.evaluation.results import load_coco_results
from matchrcnn.inference import demo as demo_module
from matchrcnn.inference.defaults import tool_opts
from matchrcnn.inference.video import open_video
from matchrcnn.modeling import Predictor
from tests.modeling.conftest import TINY
from tests.tools.conftest import CONFIG, tool_main, train_images

demo_main = tool_main("demo")
PHOTOS = 5
VIDEO_SIZE = (96, 64)


@pytest.fixture(scope="module")
def photos(datasets_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of PHOTOS synthetic photos, one of them in a sub-folder, with a truncated JPEG
    and a file that is not an image among them."""
    source, names = train_images(datasets_root)
    folder = tmp_path_factory.mktemp("photos")
    (folder / "more").mkdir()
    for index, name in enumerate(names[:PHOTOS]):
        shutil.copy(source / name, folder / ("more" if index == 0 else "") / name)
    (folder / "broken.jpg").write_bytes((source / names[0]).read_bytes()[:200])
    (folder / "notes.png").write_text("not a picture")
    return folder


def run_demo(weights: Path, *args: str, opts: tuple[str, ...] = ()) -> int:
    return demo_main(["--config-file", str(CONFIG), *args, "--confidence-threshold", "0",
                      "--no-progress", "--opts", "MODEL.WEIGHTS", str(weights), *TINY, *opts])


def readable(photos: Path) -> list[Path]:
    return sorted(path for path in photos.rglob("*.jpg") if path.name != "broken.jpg")


def reference(weights: Path, *opts: str) -> Predictor:
    """The model as the demo builds it: the tools' defaults, then the overrides."""
    return Predictor(setup_cfg(CONFIG, tool_opts([*TINY, *opts, "MODEL.WEIGHTS",
                                                  str(weights)])))


def check_results(folder: Path, prefix: str,
                  images: dict[int, tuple[int, int]]) -> dict[str, list[dict]]:
    """The three files in ``folder`` (names prefixed) in the official formats, strictly read,
    against ``images`` (id -> (height, width)); one box, mask and landmark entry per detection,
    in step."""
    gt = {"images": [{"id": i, "height": h, "width": w} for i, (h, w) in images.items()]}
    read = {task: load_coco_results(folder / f"{prefix}results_{task}.json", task, gt).entries
            for task in ("bbox", "segm", "landmarks")}
    rows = [[(e["image_id"], e["category_id"], e["score"]) for e in read[task]]
            for task in read]
    assert rows[0] == rows[1] == rows[2] and rows[0]
    for entry in read["segm"]:
        assert tuple(entry["segmentation"]["size"]) == images[entry["image_id"]]
    return read


def test_a_folder_becomes_one_png_per_photo_and_the_official_files(
        photos: Path, weights: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert run_demo(weights, "--input", str(photos), str(tmp_path / "missing.jpg"), "--output",
                    str(out), "--json") == 0
    captured = capsys.readouterr()
    inputs = readable(photos)
    pictures = sorted(out.rglob("*.png"))
    assert pictures == sorted(out / path.relative_to(photos).with_suffix(".png")
                              for path in inputs)
    for path in inputs:
        with Image.open(path) as photo, Image.open(
                out / path.relative_to(photos).with_suffix(".png")) as picture:
            assert picture.format == "PNG" and picture.size == photo.size
    for name, reason in (("broken.jpg", "truncated or corrupt"), ("notes.png", "not an image"),
                         ("missing.jpg", "no such file")):
        assert any(name in line and reason in line for line in captured.err.splitlines()
                   if line.startswith("warning: skipped")), (name, captured.err)
    assert f"wrote {PHOTOS} picture(s)" in captured.out and "3 inputs skipped" in captured.out

    described = json.loads((out / "images.json").read_text())["images"]
    assert sorted(Path(image["file_name"]) for image in described) == inputs
    sizes = {image["id"]: (image["height"], image["width"]) for image in described}
    read = check_results(out, "", sizes)
    # What was written is what the model (class-agnostic suppression on) predicts, image by
    # image; no two kept detections overlap beyond its IoU.
    predictor = reference(weights)
    for image in described:
        expected = predictor(np.asarray(Image.open(image["file_name"]).convert("RGB")))
        boxes = [e["bbox"] for e in read["bbox"] if e["image_id"] == image["id"]]
        assert len(boxes) == len(expected["scores"])
        assert np.allclose(sorted(e["score"] for e in read["bbox"]
                                  if e["image_id"] == image["id"]),
                           sorted(expected["scores"]), atol=1e-6)
        overlap = coco_box_iou(np.array(boxes)[:, None], np.array(boxes)[None])
        assert (overlap[~np.eye(len(boxes), dtype=bool)] <= 0.7 + 1e-6).all()


def test_overrides_turn_class_agnostic_suppression_off(photos: Path, weights: Path,
                                                       tmp_path: Path) -> None:
    photo = readable(photos)[0]
    counts = {}
    for enabled in ("True", "False"):
        out = tmp_path / f"{enabled}.png"
        assert run_demo(weights, "--input", str(photo), "--output", str(out), "--json",
                        opts=("TEST.CLASS_AGNOSTIC_NMS.ENABLED", enabled)) == 0
        counts[enabled] = len(json.loads((tmp_path / f"{enabled}_results_bbox.json")
                                         .read_text()))
        expected = reference(weights, "TEST.CLASS_AGNOSTIC_NMS.ENABLED", enabled)(
            np.asarray(Image.open(photo).convert("RGB")))
        assert counts[enabled] == len(expected["scores"])
    assert counts["False"] > counts["True"]  # the untrained model repeats boxes across classes


def make_video(photos: Path, path: Path) -> None:
    """An MP4 of the readable photos, resized to VIDEO_SIZE."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 4.0, VIDEO_SIZE)
    for photo in readable(photos):
        frame = np.asarray(Image.open(photo).convert("RGB").resize(VIDEO_SIZE))
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def test_a_video_becomes_an_mp4_of_as_many_frames_in_order(photos: Path, weights: Path,
                                                           tmp_path: Path, capsys) -> None:
    make_video(photos, tmp_path / "clip.mp4")
    out = tmp_path / "out"
    assert run_demo(weights, "--video-input", str(tmp_path / "clip.mp4"), "--output", str(out),
                    "--json") == 0
    assert f"wrote {out / 'clip.mp4'}: {PHOTOS} frames" in capsys.readouterr().out
    with open_video(out / "clip.mp4") as (info, drawn):
        assert len(list(drawn)) == PHOTOS
    assert (info.width, info.height, info.fps) == (*VIDEO_SIZE, 4.0)
    assert (out / "clip.mp4").stat().st_size > 1000
    read = check_results(out, "clip_", dict.fromkeys(range(1, PHOTOS + 1), VIDEO_SIZE[::-1]))
    # Frame n's entries are the model's detections in the input's n-th frame: in order, none
    # left out.
    predictor = reference(weights)
    with open_video(tmp_path / "clip.mp4") as (_, frames):
        for number, frame in enumerate(frames, start=1):
            expected = predictor(frame)["scores"]
            written = [e["score"] for e in read["bbox"] if e["image_id"] == number]
            assert np.allclose(sorted(written), sorted(expected), atol=1e-6), number


def test_a_stopped_run_keeps_every_finished_picture(photos: Path, weights: Path, tmp_path: Path,
                                                    monkeypatch, capsys) -> None:
    """Ctrl-C at the third photo: the first two pictures are whole, no temporary file is left,
    and results files of an earlier run are kept as they were."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "results_bbox.json").write_text("[]")
    predict = demo_module.Demo.predict
    calls = []

    def stop_at_third(self, image):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return predict(self, image)

    monkeypatch.setattr(demo_module.Demo, "predict", stop_at_third)
    assert run_demo(weights, "--input", *map(str, readable(photos)), "--output", str(out),
                    "--json") == 130
    assert "interrupted" in capsys.readouterr().err
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted([*(p.with_suffix(".png").name for p in readable(photos)[:2]),
                              "results_bbox.json"])
    for name in written[:-1]:
        with Image.open(out / name) as picture:
            picture.verify()
    assert (out / "results_bbox.json").read_text() == "[]"


@pytest.mark.parametrize(("args", "opts", "message"), [
    (["--input", "{photos}/broken.jpg"], (), "no input could be read: nothing written"),
    (["--input", "{tmp}/nothing-here"], (), "--input names no image file"),
    (["--video-input", "{tmp}/bad.mp4"], (), "bad.mp4: not a video OpenCV can read"),
    (["--video-input", "{photos}/notes.png"], (), "notes.png: holds no frame that can be"),
    (["--input", "{photos}", "--output", "{tmp}/one.png"], (), "is one file but the inputs"),
    (["--input", "{photos}", "--confidence-threshold", "2"], (), "must be in [0, 1]"),
])
def test_inputs_that_cannot_work_end_in_one_error_line(photos: Path, weights: Path,
                                                       tmp_path: Path, capsys, args, opts,
                                                       message) -> None:
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    args = [arg.format(photos=photos, tmp=tmp_path) for arg in args]
    assert demo_main(["--config-file", str(CONFIG), "--output", str(tmp_path / "out"),
                      "--no-progress", "--json", *args, "--opts", "MODEL.WEIGHTS", str(weights),
                      *TINY, *opts]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_demo_needs_trained_weights(tmp_path: Path, photos: Path, capsys) -> None:
    assert demo_main(["--config-file", str(CONFIG), "--input", str(photos), "--output",
                      str(tmp_path), "--opts", *TINY]) == 1
    assert "the demo needs trained weights" in capsys.readouterr().err
