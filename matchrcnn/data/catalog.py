"""Named dataset splits, in the manner of detectron2's DatasetCatalog and MetadataCatalog.

A name such as ``synthetic_train`` resolves, when it is used, to files under the datasets root
(``$MATCHRCNN_DATASETS``, default ``./datasets``)::

    <root>/<dataset>/<split>/image/NNNNNN.jpg          images
    <root>/<dataset>/annotations/<split>.json          COCO form (tools/convert_deepfashion2.py)
    <root>/<dataset>/retrieval/<split>/query_gt.json   retrieval ground truth (--retrieval-gt)
    <root>/<dataset>/retrieval/<split>/gallery_gt.json

DeepFashion2's test split has no annotations: ``deepfashion2_test`` is its images and the
released image information (``matchrcnn.data.image_info``)::

    <root>/deepfashion2/test/image/NNNNNN.jpg
    <root>/deepfashion2/json_for_test/keypoints_test_information.json          every image
    <root>/deepfashion2/json_for_test/retrieval_test_consumer_information.json consumer images
    <root>/deepfashion2/json_for_test/retrieval_test_shop_information.json     shop images

Its records have no annotations; ``register_image_info_split`` registers any split laid out so
(an unannotated copy of a split, for instance), and its metadata says ``annotated=False``.

The other datasets (tools/convert_dataset.py) are registered as ``fashionai_{train,test}``,
``salhg_{person,garment}_{train,test}`` and ``viton_{train,test}`` (layouts in
``OTHER_BUILTINS`` and datasets/README.md); ``register_coco_landmarks`` registers any converted
COCO keypoint file under a name of one's choice.

``DatasetCatalog.get(name)`` returns the split's records: one dict per image with its COCO fields,
``file_name`` made absolute, and an ``annotations`` list of that image's COCO annotations, held
compactly in a ``RecordStore`` (``matchrcnn.data.records``) that rebuilds each dict when it is
read. Each split's metadata names its landmark ``layout`` (None for a split without landmarks).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from matchrcnn.config import ConfigError
from matchrcnn.data.categories import CATEGORY_NAMES
from matchrcnn.data.image_info import info_file_names, load_image_info
from matchrcnn.data.layouts import LandmarkLayout, get_layout
from matchrcnn.data.records import RecordStore, load_coco_records

DATASETS_ENV = "MATCHRCNN_DATASETS"
BUILTIN_SPLITS = {
    "deepfashion2": ("train", "validation"),
    "synthetic": ("train", "validation"),
}


class DatasetFilesError(FileNotFoundError):
    """A registered split whose files are not there; the message says where they go or which
    command writes them."""


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
    def register(self, name: str, func: Callable[[], Sequence[dict]]) -> None:
        """Register a function that returns the split's records when called."""
        if not callable(func):
            raise TypeError(f"dataset {name!r}: expected a function returning records")
        super().register(name, func)

    def get(self, name: str) -> Sequence[dict]:
        return self._lookup(name)()


class _MetadataCatalog(_Catalog):
    def get(self, name: str) -> SimpleNamespace:
        """The split's metadata, read as attributes (``.thing_classes``), as in detectron2."""
        return self._lookup(name)


DatasetCatalog = _DatasetCatalog("dataset")
MetadataCatalog = _MetadataCatalog("metadata")


def register_deepfashion2_layout(name: str, files: SplitFiles) -> None:
    """Register a split laid out as DeepFashion2 (converted to COCO form) under ``name``."""
    register_coco_files(name, files, get_layout("deepfashion2"))


@dataclass(frozen=True)
class CocoFiles:
    """A COCO-form split's files: paths relative to ``root`` (None: the datasets root, resolved
    when asked for, as SplitFiles does) or absolute; retrieval ground truth where there is one."""

    json_path: Path
    image_path: Path
    retrieval_path: Path | None = None
    root: Path | None = None
    command: str = ""
    """The command that writes the COCO file, for the error when it is missing."""

    @property
    def base(self) -> Path:
        return self.root if self.root is not None else datasets_root()

    @property
    def json_file(self) -> Path:
        return self.base / self.json_path

    @property
    def image_root(self) -> Path:
        return self.base / self.image_path

    @property
    def query_gt(self) -> Path | None:
        return None if self.retrieval_path is None else self.base / self.retrieval_path / \
            "query_gt.json"

    @property
    def gallery_gt(self) -> Path | None:
        return None if self.retrieval_path is None else self.base / self.retrieval_path / \
            "gallery_gt.json"

    def convert_command(self) -> str:
        return self.command.format(base=self.base)


@dataclass(frozen=True)
class ImageInfoFiles:
    """An unannotated split's files, laid out as DeepFashion2 releases its test split:
    ``<dataset>/<split>/image/`` and ``<dataset>/json_for_<split>/`` with the three information
    files of ``tag`` (``matchrcnn.data.image_info.info_file_names``)."""

    dataset: str
    split: str
    tag: str
    root: Path | None = None

    @property
    def base(self) -> Path:
        return (self.root if self.root is not None else datasets_root()) / self.dataset

    @property
    def image_root(self) -> Path:
        return self.base / self.split / "image"

    @property
    def info_dir(self) -> Path:
        return self.base / f"json_for_{self.split}"

    @property
    def info_files(self) -> tuple[Path, Path, Path]:
        """Every image, the consumer images, the shop images."""
        return tuple(self.info_dir / name for name in info_file_names(self.tag))


def register_image_info_split(name: str, files: ImageInfoFiles) -> None:
    """Register an unannotated split in DeepFashion2's layout: records without annotations, each
    with its ``source`` where the information names it; metadata with ``annotated=False``."""

    def load() -> RecordStore:
        missing = [path for path in (files.image_root, *files.info_files) if not path.exists()]
        if missing:
            raise DatasetFilesError(
                f"dataset {name!r}: {', '.join(map(str, missing))} missing. Unzip the split's "
                f"images into {files.image_root} and its image information files into "
                f"{files.info_dir}")
        images, consumer, shop = files.info_files
        return load_image_info(images, files.image_root, consumer, shop)

    layout = get_layout("deepfashion2")
    DatasetCatalog.register(name, load)
    MetadataCatalog.register(name, SimpleNamespace(
        files=files, thing_classes=list(layout.category_names),
        keypoint_names=list(layout.slot_names), keypoint_oks_sigmas=list(layout.oks_sigmas),
        layout=layout.name, annotated=False))


def register_coco_files(name: str, files: CocoFiles | SplitFiles, layout: LandmarkLayout | None,
                        thing_classes: list[str] | None = None) -> None:
    """Register a COCO-form split: its records, and metadata from its landmark layout."""

    def load() -> RecordStore:
        if not files.json_file.is_file():
            command = files.convert_command()
            hint = command and f" Convert the split first:\n  {command}"
            raise DatasetFilesError(f"dataset {name!r}: {files.json_file} does not exist.{hint}")
        return load_coco_records(files.json_file, files.image_root)

    DatasetCatalog.register(name, load)
    MetadataCatalog.register(
        name,
        SimpleNamespace(
            files=files,
            thing_classes=list(thing_classes or (layout.category_names if layout else ())),
            keypoint_names=list(layout.slot_names) if layout else [],
            keypoint_oks_sigmas=list(layout.oks_sigmas) if layout and layout.oks_sigmas else None,
            layout=layout.name if layout else None,
        ),
    )


def register_coco_landmarks(name: str, json_file: str | os.PathLike,
                            image_root: str | os.PathLike, layout: str) -> None:
    """Register a COCO keypoint file (e.g. from tools/convert_dataset.py) in a named layout.

    Relative paths are taken from the working directory when the split is loaded; the name can
    then be used in DATASETS.TRAIN and DATASETS.TEST.
    """
    files = CocoFiles(Path(json_file), Path(image_root), root=Path())
    register_coco_files(name, files, get_layout(layout))


def check_layout(names: tuple[str, ...] | list[str], layout: str) -> None:
    """ConfigError unless every named split is annotated in ``layout`` (the model's layout)."""
    for name in names:
        found = getattr(MetadataCatalog.get(name), "layout", None)
        if found != layout:
            has = "no landmarks" if found is None else f"the {found!r} landmark layout"
            raise ConfigError(
                f"dataset {name!r} has {has}, but MODEL.ROI_LANDMARK_HEAD.LAYOUT is "
                f"{layout!r}; set the layout (and MODEL.ROI_HEADS.NUM_CLASSES) to the dataset's, "
                "or MODEL.LANDMARK_ON False"
            )


_CONVERT = "python tools/convert_dataset.py"
OTHER_BUILTINS: dict[str, tuple[CocoFiles, str | None]] = {
    **{
        f"fashionai_{split}": (CocoFiles(
            Path("fashionai", "annotations", f"{split}.json"), Path("fashionai", split),
            command=f"{_CONVERT} fashionai --csv {{base}}/fashionai/{split}/Annotations/"
                    f"{split}.csv --images {{base}}/fashionai/{split} "
                    f"--out {{base}}/fashionai/annotations/{split}.json"), "fashionai")
        for split in ("train", "test")
    },
    **{
        f"salhg_{kind}_{split}": (CocoFiles(
            Path("salhg", "annotations", f"{kind}_{split}.json"), Path("salhg", split, kind),
            command=f"{_CONVERT} salhg --pkl PICKLE --images {{base}}/salhg/{split}/{kind} "
                    f"--out {{base}}/salhg/annotations/{kind}_{split}.json"), "salhg")
        for kind in ("person", "garment") for split in ("train", "test")
    },
    **{
        f"viton_{split}": (CocoFiles(
            Path("viton", "retrieval", split, "images.json"), Path("viton", split),
            retrieval_path=Path("viton", "retrieval", split),
            command=f"{_CONVERT} viton --pairs PAIRS.txt --root {{base}}/viton/{split} "
                    f"--out {{base}}/viton/retrieval/{split}"), None)
        for split in ("train", "test")
    },
}
"""Named splits of FashionAI, SAL-HG and VITON-family pairs under the datasets root: COCO file,
image root, retrieval ground truth (VITON) and landmark layout (None: no landmarks)."""


def _register_builtins() -> None:
    for dataset, splits in BUILTIN_SPLITS.items():
        for split in splits:
            register_deepfashion2_layout(f"{dataset}_{split}", SplitFiles(dataset, split))
    register_image_info_split("deepfashion2_test", ImageInfoFiles("deepfashion2", "test", "test"))
    for name, (files, layout) in OTHER_BUILTINS.items():
        register_coco_files(name, files, get_layout(layout) if layout else None,
                            thing_classes=None if layout else list(CATEGORY_NAMES))


_register_builtins()
