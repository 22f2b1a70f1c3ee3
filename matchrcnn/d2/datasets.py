"""The project's splits with landmarks in detectron2's DatasetCatalog and MetadataCatalog.

The records are the project catalog's (matchrcnn.data.catalog, same split names, files under
``$MATCHRCNN_DATASETS``) in detectron2's dataset format: ``bbox`` with ``bbox_mode`` XYWH_ABS,
``category_id`` 0..12 (detectron2's contiguous ids: DeepFashion2's id minus one), the 294-slot
landmark vector as ``keypoints`` in the file's pixel coordinates, and what the match network
needs: ``pair_id`` and ``style`` per item, ``source`` per image. Keypoints get no +0.5 shift (as
detectron2's COCO loader adds): the landmark head uses torchvision's heatmap convention, exactly as
the torchvision engine does, so both engines read and predict the same coordinates.

Metadata: ``thing_classes``, ``keypoint_names`` "1".."294", ``keypoint_oks_sigmas`` (the official
294 sigmas), ``split_files`` (a SplitFiles: COCO file, images, retrieval ground truth) and
``evaluator_type`` "deepfashion2", and ``keypoint_flip_map``: the left/right pairs of the 294
slots (the layout's flip map, matchrcnn/data/deepfashion2_flip_pairs.json), by keypoint name, so
that detectron2's own horizontal flip (INPUT.RANDOM_FLIP "horizontal") moves each mirrored landmark
to its mirror slot, as the torchvision engine's flip does.

FashionAI's and SAL-HG's splits get the same fields from their own landmark layout (its categories,
slot names and flip map; ``layout`` names it), without retrieval files or an evaluator type.
"""

from __future__ import annotations

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from matchrcnn.data import catalog
from matchrcnn.data.catalog import (
    BUILTIN_SPLITS,
    OTHER_BUILTINS,
    SplitFiles,
    register_deepfashion2_layout,
)
from matchrcnn.data.layouts import DEEPFASHION2, LandmarkLayout, get_layout

EVALUATOR_TYPE = "deepfashion2"


def to_d2_record(record: dict) -> dict:
    """One record of the project's catalog in detectron2's dataset format (see module doc)."""
    annotations = [
        {**annotation, "bbox_mode": BoxMode.XYWH_ABS, "category_id": annotation["category_id"] - 1}
        for annotation in record["annotations"]
    ]
    return {**record, "annotations": annotations}


def _register(name: str, layout: LandmarkLayout, files: SplitFiles | None = None) -> None:
    """The project catalog's split ``name`` in detectron2's catalogs, metadata from its layout."""
    DatasetCatalog.register(
        name, lambda: [to_d2_record(record) for record in catalog.DatasetCatalog.get(name)]
    )
    metadata = {
        "thing_classes": list(layout.category_names),
        "keypoint_names": list(layout.slot_names),
        "keypoint_flip_map": layout.named_flip_pairs(),
        "layout": layout.name,
    }
    if layout.oks_sigmas:
        metadata["keypoint_oks_sigmas"] = list(layout.oks_sigmas)
    if files is not None:
        metadata.update(split_files=files, evaluator_type=EVALUATOR_TYPE)
    MetadataCatalog.get(name).set(**metadata)


def register_split(name: str, files: SplitFiles) -> None:
    """Register a split laid out as DeepFashion2 (converted to COCO form) in both catalogs."""
    register_deepfashion2_layout(name, files)
    _register(name, DEEPFASHION2, files)


def register_builtin_splits() -> None:
    """The project's named splits with landmarks: deepfashion2_{train,validation},
    synthetic_{train,validation}, and FashionAI's and SAL-HG's (``catalog.OTHER_BUILTINS``)."""
    for dataset, splits in BUILTIN_SPLITS.items():
        for split in splits:
            _register(f"{dataset}_{split}", DEEPFASHION2, SplitFiles(dataset, split))
    for name, (_, layout) in OTHER_BUILTINS.items():
        if layout is not None:
            _register(name, get_layout(layout))
