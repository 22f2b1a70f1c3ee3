"""tools/demo.py's work: a trained model's garments drawn on photos and video frames.

Each detection scoring at least the confidence threshold is drawn in its category's colour: its
mask, its box captioned with the category's name and score, and its landmarks
(matchrcnn.visualize). Images become one PNG each, a video one MP4 of as many frames, in order.
Photos are read upright (EXIF orientation applied), as a viewer shows them. An image that cannot
be read is reported and skipped, and the run goes on; every picture is written atomically, so a
run stopped half-way keeps every picture it finished.

With ``json``, the drawn detections are also written in DeepFashion2's official result formats
(``results_bbox.json``, ``results_segm.json`` with a mask head, ``results_landmarks.json`` with
DeepFashion2's 294-slot landmarks), and for images ``images.json``: COCO ``images`` entries
(id, file_name, width, height) saying which image each id is. Image ids: see
``inputs.plan_outputs``; a video's frames are numbered from 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np
from fvcore.common.config import CfgNode
from PIL import Image
from tqdm import tqdm

from matchrcnn.config import ConfigError
from matchrcnn.data.images import DEFAULT_MAX_PIXELS, ImageInputError, read_image
from matchrcnn.data.layouts import DEEPFASHION2
from matchrcnn.evaluation.results import box_results, landmark_results, mask_results
from matchrcnn.inference.inputs import DemoInput
from matchrcnn.inference.streams import ResultStreams
from matchrcnn.inference.video import VideoInputError, open_video, write_mp4
from matchrcnn.modeling import Predictor
from matchrcnn.modeling.branches import landmark_layout
from matchrcnn.utils.atomic import atomic_open, write_json_atomic
from matchrcnn.utils.errors import UsageError
from matchrcnn.visualize import draw_garments, prediction_garments

IMAGES_FILE = "images.json"
WRITERS = {"bbox": box_results, "segm": mask_results, "landmarks": landmark_results}


@dataclass(frozen=True)
class DemoSettings:
    """``confidence_threshold``: detections drawn (and written); ``json``: also the official
    results files; ``max_pixels``: larger images are skipped; ``progress``: a progress bar."""

    confidence_threshold: float = 0.5
    json: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    progress: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise UsageError(f"--confidence-threshold must be in [0, 1], got "
                             f"{self.confidence_threshold}")


@dataclass
class DemoReport:
    """What a run wrote: pictures (PNG files or video frames), detections drawn, inputs skipped
    (one "FILE: REASON" line each) and the results files by kind."""

    pictures: int = 0
    detections: int = 0
    skipped: list[str] = field(default_factory=list)
    results: dict[str, Path] = field(default_factory=dict)


def results_location(output: Path, is_file: bool) -> tuple[Path, str]:
    """Where the results files go, as (folder, name prefix): into an output folder as they are,
    or beside an output file, named after it (``shot.mp4``: ``shot_results_bbox.json``)."""
    return (output.parent, f"{output.stem}_") if is_file else (output, "")


def results_paths(kinds: list[str], location: tuple[Path, str]) -> dict[str, Path]:
    """The results file of each kind at ``location`` (``results_location``)."""
    folder, prefix = location
    return {kind: folder / f"{prefix}results_{kind}.json" for kind in kinds}


class Demo:
    """The model of ``cfg`` (MODEL.WEIGHTS required) and the settings of one run."""

    def __init__(self, cfg: CfgNode, settings: DemoSettings) -> None:
        if not cfg.MODEL.WEIGHTS:
            raise ConfigError("the demo needs trained weights: add --opts MODEL.WEIGHTS FILE "
                              "(e.g. output/quickstart/model_final.pth)")
        self.settings = settings
        self.predictor = Predictor(cfg)
        layout = landmark_layout(cfg)
        self.category_names = layout.category_names
        self.kinds = ["bbox"]
        if cfg.MODEL.MASK_ON:
            self.kinds.append("segm")
        if cfg.MODEL.LANDMARK_ON and layout is DEEPFASHION2:
            self.kinds.append("landmarks")

    def predict(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """The detections of ``image`` at or above the threshold, best first."""
        prediction = self.predictor(image)
        keep = np.flatnonzero(prediction["scores"] >= self.settings.confidence_threshold)
        keep = keep[np.argsort(-prediction["scores"][keep], kind="stable")]
        return {key: value[keep] for key, value in prediction.items()}

    def picture(self, image: np.ndarray, prediction: dict[str, np.ndarray]) -> Image.Image:
        """The image with its detections drawn, the best on top."""
        return draw_garments(image, prediction_garments(prediction, self.category_names)[::-1])

    def _entries(self, image_id: int, prediction: dict[str, np.ndarray]) -> Iterator[
            tuple[str, list[dict]]]:
        for kind in self.kinds:
            yield kind, WRITERS[kind]([{**prediction, "image_id": image_id}])

    def run_images(self, inputs: list[DemoInput], location: tuple[Path, str],
                   report: Callable[[str], None]) -> DemoReport:
        """A PNG per readable input; ``report(line)`` is called for each skipped one.
        UsageError, and no results file, when none could be read."""
        result = DemoReport()
        images: list[dict] = []
        paths = results_paths(self.kinds, location) if self.settings.json else {}
        with ResultStreams(paths) as streams:
            for item in tqdm(inputs, desc="demo", unit="image",
                             disable=not self.settings.progress or len(inputs) < 2):
                try:
                    image = read_image(item.path, self.settings.max_pixels, upright=True)
                except ImageInputError as error:
                    result.skipped.append(str(error))
                    report(f"skipped {error}")
                    continue
                prediction = self.predict(image)
                with atomic_open(item.output, "wb") as handle:
                    self.picture(image, prediction).save(handle, format="PNG")
                result.pictures += 1
                result.detections += len(prediction["scores"])
                if paths:
                    for kind, entries in self._entries(item.image_id, prediction):
                        streams.add(kind, entries)
                    images.append({"id": item.image_id, "file_name": str(item.path),
                                   "width": image.shape[1], "height": image.shape[0]})
            if not result.pictures:
                raise UsageError("no input could be read: nothing written")
        if paths:
            images_file = location[0] / f"{location[1]}{IMAGES_FILE}"
            write_json_atomic(images_file, {"images": images})
            result.results = {**paths, "images": images_file}
        return result

    def run_video(self, video: Path, target: Path, location: tuple[Path, str]) -> DemoReport:
        """``target``, an MP4 of the video's frames with their detections drawn."""
        result = DemoReport()
        paths = results_paths(self.kinds, location) if self.settings.json else {}
        with open_video(video) as (info, frames):
            first = next(frames, None)
            if first is None:
                raise VideoInputError(f"{video}: holds no frame that can be decoded")
            height, width = first.shape[:2]
            with write_mp4(target, info.fps, width, height) as mp4, ResultStreams(paths) as streams:
                bar = tqdm(chain([first], frames), desc="demo", unit="frame",
                           total=info.frames or None, disable=not self.settings.progress)
                for number, frame in enumerate(bar, start=1):
                    prediction = self.predict(frame)
                    mp4.write(np.asarray(self.picture(frame, prediction)))
                    result.detections += len(prediction["scores"])
                    if paths:
                        for kind, entries in self._entries(number, prediction):
                            streams.add(kind, entries)
                result.pictures = mp4.frames
        result.results = paths
        return result
