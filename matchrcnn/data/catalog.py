"""Named dataset splits, in the manner of detectron2's DatasetCatalog and MetadataCatalog.

A name such as ``synthetic_train`` resolves, when it is used, to files under the datasets root
(``$MATCHRCNN_DATASETS``, default ``./datasets``)::

    <root>/<dataset>/<split>/image/NNNNNN.jpg          images
    <root>/<dataset>/annotations/<split>.json          COCO form (tools/convert_deepfashion2.py)
    <root>/<dataset>/retrieval/<split>/query_gt.json   retrieval ground truth (--retrieval-gt)
    <root>/<dataset>/retrieval/<split>/gallery_gt.json

``DatasetCatalog.get(name)`` returns the split's records: one dict per image with its COCO fields,
``file_name`` made absolute, and an ``annotations`` list of that image's COCO annotations.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from matchrcnn.data.categories import CATEGORY_NAMES, NUM_LANDMARKS, keypoint_oks_sigmas

DATASETS_ENV = "MATCHRCNN_DATASETS"
BUILTIN_SPLITS = {
    "deepfashion2": ("train", "validation"),
    "synthetic": ("train", "validation"),
}


def datasets_root() -> Path:
    """The datasets root: ``$MATCHRCNN_DATASETS`` or ``./datasets``."""
    return Path(os.environ.get(DATASETS_ENV, "datasets"))


@dataclass(frozen=True)
class SplitFiles:
    """Where one split's files live; paths are resolved against the root when asked for."""

    dataset: str
    split: str
    root: Path | None = None

    @property
    def base(self) -> Path:
        return (self.root if self.root is not None else datasets_root()) / self.dataset

    @property
    def image_root(self) -> Path:
        return self.base / self.split / "image"

    @property
    def json_file(self) -> Path:
        return self.base / "annotations" / f"{self.split}.json"

    @property
    def query_gt(self) -> Path:
        return self.base / "retrieval" / self.split / "query_gt.json"

    @property
    def gallery_gt(self) -> Path:
        return self.base / "retrieval" / self.split / "gallery_gt.json"

    def convert_command(self) -> str:
        return (
            f"python tools/convert_deepfashion2.py --root {self.base} --split {self.split} "
            f"--out {self.json_file} --retrieval-gt {self.query_gt.parent}"
        )


class _Catalog:
    """A name -> value registry that refuses silent re-registration."""

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._entries: dict[str, Any] = {}

    def register(self, name: str, value: Any) -> None:
        if name in self._entries:
            raise KeyError(f"{self._kind} {name!r} is already registered")
        self._entries[name] = value

    def names(self) -> list[str]:
        return sorted(self._entries)

    def _lookup(self, name: str) -> Any:
        if name not in self._entries:
            raise KeyError(
                f"{self._kind} {name!r} is not registered; registered: {', '.join(self.names())}"
            )
        return self._entries[name]


class _DatasetCatalog(_Catalog):
    def register(self, name: str, func: Callable[[], list[dict]]) -> None:
        """Register a function that returns the split's records when called."""
        if not callable(func):
            raise TypeError(f"dataset {name!r}: expected a function returning records")
        super().register(name, func)

    def get(self, name: str) -> list[dict]:
        return self._lookup(name)()


class _MetadataCatalog(_Catalog):
    def get(self, name: str) -> SimpleNamespace:
        """The split's metadata, read as attributes (``.thing_classes``), as in detectron2."""
        return self._lookup(name)


DatasetCatalog = _DatasetCatalog("dataset")
MetadataCatalog = _MetadataCatalog("metadata")


def load_coco_records(json_file: str | os.PathLike, image_root: str | os.PathLike) -> list[dict]:
    """Group a COCO file's annotations under their images, in image-id order."""
    json_file = Path(json_file)
    try:
        with open(json_file, encoding="utf-8") as handle:
            coco = json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"{json_file} is not valid JSON: {error}") from error
    for key in ("images", "annotations"):
        if key not in coco:
            raise ValueError(f"{json_file} is not a COCO file: it has no {key!r}")
    records = {}
    for image in coco["images"]:
        record = dict(image)
        record["image_id"] = image["id"]
        record["file_name"] = str(Path(image_root) / image["file_name"])
        record["annotations"] = []
        records[image["id"]] = record
    for annotation in coco["annotations"]:
        if annotation["image_id"] not in records:
            raise ValueError(
                f"{json_file}: annotation {annotation.get('id')} names image "
                f"{annotation['image_id']}, which the file does not list"
            )
        records[annotation["image_id"]]["annotations"].append(annotation)
    return [records[image_id] for image_id in sorted(records)]


def register_deepfashion2_layout(name: str, files: SplitFiles) -> None:
    """Register a split laid out as DeepFashion2 (converted to COCO form) under ``name``."""

    def load() -> list[dict]:
        if not files.json_file.is_file():
            raise FileNotFoundError(
                f"dataset {name!r}: {files.json_file} does not exist. Convert the split first:\n"
                f"  {files.convert_command()}"
            )
        return load_coco_records(files.json_file, files.image_root)

    DatasetCatalog.register(name, load)
    MetadataCatalog.register(
        name,
        SimpleNamespace(
            files=files,
            thing_classes=list(CATEGORY_NAMES),
            keypoint_names=[str(i) for i in range(1, NUM_LANDMARKS + 1)],
            keypoint_oks_sigmas=list(keypoint_oks_sigmas()),
        ),
    )


def _register_builtins() -> None:
    for dataset, splits in BUILTIN_SPLITS.items():
        for split in splits:
            register_deepfashion2_layout(f"{dataset}_{split}", SplitFiles(dataset, split))


_register_builtins()
