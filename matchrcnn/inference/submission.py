"""tools/write_submission.py's work: DeepFashion2's four official results files for a split.

The model sees every image once. Shop images come first: their detections become box, mask and
landmark entries, and those scoring at least ``min_score`` the items of a gallery (FAISS and
SQLite, the retrieval package's, in a temporary folder removed at the end). Then the consumer
images: their detections become entries too, and every one of them is a retrieval query searched
in the complete gallery, in the match network's order; its 20 best shop items make its retrieval
entry, as ``tools/eval_retrieval.py`` makes them (the protocol itself picks, per query item, the
best-scoring detection of its class). Images neither consumer nor shop get boxes, masks and
landmarks only.

Nothing grows with the split beyond the gallery the ranking needs: entries go to their files as
each image is done (``streams.ResultStreams``), and queries are searched in groups of
``SEARCH_GROUP`` images. Ground truth is never read, so the split may be unannotated
(``deepfashion2_test``). The detections are the config's: TEST.CLASS_AGNOSTIC_NMS stays as the
config has it (off by default, as in evaluation: COCO AP and the retrieval protocol both score
per-class hypotheses that it would remove).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fvcore.common.config import CfgNode
from tqdm import tqdm

from matchrcnn.config import ConfigError
from matchrcnn.data.catalog import DatasetCatalog, DatasetFilesError
from matchrcnn.data.image_info import ImageInfoError
from matchrcnn.data.layouts import DEEPFASHION2
from matchrcnn.evaluation.results import (
    box_results,
    landmark_results,
    mask_results,
)
from matchrcnn.inference.streams import ResultStreams
from matchrcnn.modeling.branches import landmark_layout
from matchrcnn.retrieval.evaluate import searched_entries
from matchrcnn.retrieval.gallery import Gallery
from matchrcnn.retrieval.inference import InferenceSettings, predict_images
from matchrcnn.retrieval.model import RetrievalModel
from matchrcnn.retrieval.records import ShopImage
from matchrcnn.retrieval.sources import SourceImage, split_sources
from matchrcnn.utils.errors import UsageError

RESULT_FILES = {kind: f"results_{kind}.json" for kind in ("bbox", "segm", "landmarks",
                                                           "retrieval")}
"""The four files, named as the evaluator names them (evaluation/evaluator.py)."""
SEARCH_GROUP = 64
"""Consumer images whose detections are searched together."""
QUERY_KEYS = ("boxes", "labels", "scores", "embeddings")
"""What a waiting query keeps of its prediction (not its image-sized masks)."""


@dataclass(frozen=True)
class SubmissionSettings:
    """``min_score``: shop detections kept as gallery items; ``commit_every``: shop images per
    gallery transaction (each rewrites the index file); ``inference``: batching, decoding
    threads, pixel limit."""

    min_score: float = 0.5
    commit_every: int = 1024
    inference: InferenceSettings = field(default_factory=InferenceSettings)
    progress: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score <= 1.0:
            raise UsageError(f"--min-score must be in [0, 1], got {self.min_score}")
        if self.commit_every < 1:
            raise UsageError(f"--commit-every must be at least 1, got {self.commit_every}")


@dataclass
class SubmissionReport:
    """Images by source, gallery items, entries written per file, unreadable images (path ->
    reason)."""

    shop_images: int
    user_images: int
    other_images: int
    gallery_items: int = 0
    entries: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def split_records(name: str) -> Sequence[dict]:
    """The records of registered split ``name``; UsageError naming ``--split`` when it is not
    registered or its files are missing or malformed."""
    if name not in DatasetCatalog.names():
        raise UsageError(f"--split {name}: not a registered split (registered: "
                         f"{', '.join(DatasetCatalog.names())})")
    try:
        return DatasetCatalog.get(name)
    except (DatasetFilesError, ImageInfoError) as error:
        raise UsageError(f"--split {name}: {error}") from None


def require_heads(cfg: CfgNode) -> None:
    """ConfigError unless the model predicts everything the four files need."""
    missing = [key for key in ("MODEL.MASK_ON", "MODEL.LANDMARK_ON", "MODEL.MATCH_ON")
               if not cfg.MODEL[key.split(".")[1]]]
    if missing:
        raise ConfigError(f"the submission files need masks, landmarks and the match network: "
                          f"{', '.join(missing)} must be True")
    if landmark_layout(cfg) is not DEEPFASHION2:
        raise ConfigError(f"the official landmark format has DeepFashion2's 294 slots, but "
                          f"MODEL.ROI_LANDMARK_HEAD.LAYOUT is "
                          f"{cfg.MODEL.ROI_LANDMARK_HEAD.LAYOUT!r}")


def _sources(records: Sequence[dict]) -> tuple[list[SourceImage], list[SourceImage],
                                               list[SourceImage]]:
    """Shop, consumer and other images, with their ids (ground truth, where the records have
    it, is not used)."""
    others = [SourceImage(str(Path(record["file_name"]).resolve()), int(record["image_id"]))
              for record in records if record.get("source") not in ("shop", "user")]
    return split_sources(records, "shop"), split_sources(records, "user"), others


def _coco_entries(image_id: int, prediction: dict[str, np.ndarray]) -> dict[str, list[dict]]:
    with_id = [{**prediction, "image_id": image_id}]
    return {"bbox": box_results(with_id), "segm": mask_results(with_id),
            "landmarks": landmark_results(with_id)}


def write_submission(model: RetrievalModel, records: Sequence[dict], out_dir: str | Path,
                     settings: SubmissionSettings | None = None,
                     on_failure: Callable[[str, str], None] | None = None) -> SubmissionReport:
    """The four files in ``out_dir`` (``RESULT_FILES``), all of them or, on an error, none new.
    ``on_failure(path, reason)`` is called for each image that cannot be read; its items count
    as missed. UsageError when the split has no consumer or no shop images, or no shop image
    gives a gallery item."""
    settings = settings or SubmissionSettings()
    require_heads(model.predictor.cfg)
    shops, users, others = _sources(records)
    if not shops or not users:
        raise UsageError(f"retrieval needs consumer and shop images; the split has "
                         f"{len(users)} consumer and {len(shops)} shop images")
    report = SubmissionReport(len(shops), len(users), len(others))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {kind: out_dir / name for kind, name in RESULT_FILES.items()}
    bar = tqdm(total=len(shops) + len(users) + len(others), desc="submission", unit="image",
               disable=not settings.progress)

    def predicted(images: list[SourceImage]) -> Iterator[tuple[SourceImage, dict]]:
        for source, prediction, error in predict_images(model, images, settings.inference,
                                                        with_masks=True):
            bar.update(1)
            if error is not None:
                report.failed[source.path] = str(error)
                if on_failure is not None:
                    on_failure(source.path, str(error))
                continue
            yield source, prediction

    with (tempfile.TemporaryDirectory(prefix=".gallery-", dir=out_dir) as gallery_dir,
          Gallery.create(gallery_dir, model.fingerprint, model.metric) as gallery,
          ResultStreams(paths) as streams, bar):
        ready: list[ShopImage] = []
        for images, indexed in ((shops, True), (others, False)):
            for source, prediction in predicted(images):
                for kind, entries in _coco_entries(source.image_id, prediction).items():
                    streams.add(kind, entries)
                if indexed:
                    ready.append(ShopImage.from_prediction(source.path, source.image_id,
                                                           prediction, settings.min_score))
                if len(ready) >= settings.commit_every:
                    gallery.add_images(ready)
                    ready.clear()
        gallery.add_images(ready)
        report.gallery_items = gallery.item_count
        if report.gallery_items == 0:
            raise UsageError(f"no shop image has a detection scoring at least --min-score "
                             f"{settings.min_score}, so nothing can be retrieved: lower it")
        waiting: list[dict] = []

        def flush() -> None:
            streams.add("retrieval", searched_entries(gallery, waiting))
            waiting.clear()

        for source, prediction in predicted(users):
            for kind, entries in _coco_entries(source.image_id, prediction).items():
                streams.add(kind, entries)
            waiting.append({"image_id": source.image_id,
                            **{key: prediction[key] for key in QUERY_KEYS}})
            if len(waiting) >= SEARCH_GROUP:
                flush()
        if waiting:
            flush()
        report.entries = dict(streams.counts)
    return report
