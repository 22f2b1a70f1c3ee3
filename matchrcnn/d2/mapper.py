"""detectron2's DatasetMapper with the fields of Match R-CNN's own heads.

Training instances carry, besides detectron2's ``gt_boxes``, ``gt_classes`` and ``gt_masks``:
``gt_keypoints`` (N, K, 3) for the landmark head (K the slots of MODEL.ROI_LANDMARK_HEAD.LAYOUT,
294 in DeepFashion2's), and ``gt_pair_ids``, ``gt_styles`` and ``gt_is_shop`` (one flag per item,
all equal) for the match network, and ``gt_<key>`` for each field that a new RoI branch reads
from the annotations (``RoIBranch.annotation_targets``). Being ``gt_*`` fields, they
follow every instance filter and every proposal that detectron2 matches to an item.
"""

from __future__ import annotations

import numpy as np
import torch
from detectron2.config import CfgNode, configurable
from detectron2.data import DatasetMapper, MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import Keypoints

from matchrcnn.data.mapper import annotation_field
from matchrcnn.modeling.branch import annotation_fields
from matchrcnn.modeling.branches import landmark_layout


class MatchRCNNDatasetMapper(DatasetMapper):
    """A dataset dict -> detectron2's model input, with landmarks and pair labels for training."""

    @configurable
    def __init__(self, is_train: bool = True, *, use_match: bool = True,
                 num_landmarks: int = 0,
                 annotation_fields: dict[str, tuple[str, torch.dtype | None]] | None = None,
                 **kwargs) -> None:
        super().__init__(is_train, **kwargs)
        self.use_match = use_match
        self.num_landmarks = num_landmarks
        self.annotation_fields = dict(annotation_fields or {})

    @classmethod
    def from_config(cls, cfg: CfgNode, is_train: bool = True) -> dict:
        ret = super().from_config(cfg, is_train)
        ret["use_keypoint"] = cfg.MODEL.LANDMARK_ON or cfg.MODEL.KEYPOINT_ON
        ret["keypoint_hflip_indices"] = landmark_hflip_indices(cfg, is_train)
        ret["use_match"] = cfg.MODEL.MATCH_ON
        if cfg.MODEL.LANDMARK_ON:
            ret["num_landmarks"] = landmark_layout(cfg).num_slots
        elif cfg.MODEL.KEYPOINT_ON:
            ret["num_landmarks"] = cfg.MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS
        ret["annotation_fields"] = {key: (spec.annotation, spec.dtype)
                                    for key, spec in annotation_fields(cfg).items()}
        return ret

    def _transform_annotations(
        self, dataset_dict: dict, transforms: T.TransformList, image_shape: tuple[int, int]
    ) -> None:
        annotations = []
        for annotation in dataset_dict.pop("annotations"):
            if annotation.get("iscrowd", 0):
                continue
            annotation = dict(annotation)
            if not self.use_instance_mask:
                annotation.pop("segmentation", None)
            if not self.use_keypoint:
                annotation.pop("keypoints", None)
            annotations.append(utils.transform_instance_annotations(
                annotation, transforms, image_shape,
                keypoint_hflip_indices=self.keypoint_hflip_indices,
            ))
        # Keypoints as one array: detectron2 would build them from a list of arrays, slowly.
        keypoints = [a.pop("keypoints") for a in annotations if "keypoints" in a]
        instances = utils.annotations_to_instances(
            annotations, image_shape, mask_format=self.instance_mask_format
        )
        if self.use_keypoint:
            instances.gt_keypoints = Keypoints(
                np.stack(keypoints) if keypoints else np.zeros((0, self.num_landmarks, 3))
            )
        if self.use_match:
            count = len(annotations)
            instances.gt_pair_ids = torch.tensor(
                [a["pair_id"] for a in annotations], dtype=torch.int64
            )
            instances.gt_styles = torch.tensor([a["style"] for a in annotations], dtype=torch.int64)
            instances.gt_is_shop = torch.full((count,), dataset_dict["source"] == "shop")
        items = {"annotations": annotations, "file_name": dataset_dict["file_name"]}
        for key, (name, dtype) in self.annotation_fields.items():
            instances.set(f"gt_{key}", annotation_field(items, name, dtype))
        if self.recompute_boxes:
            instances.gt_boxes = instances.gt_masks.get_bounding_boxes()
        dataset_dict["instances"] = utils.filter_empty_instances(instances)


def landmark_hflip_indices(cfg: CfgNode, is_train: bool) -> list[int] | None:
    """Landmark flip indices when training flips images; a clear error where none are known.

    DeepFashion2's splits register their ``keypoint_flip_map`` (see datasets.py); a split
    registered without one must train with INPUT.RANDOM_FLIP "none".
    """
    if not is_train or cfg.INPUT.RANDOM_FLIP == "none":
        return None
    if not (cfg.MODEL.LANDMARK_ON or cfg.MODEL.KEYPOINT_ON):
        return None
    if cfg.INPUT.RANDOM_FLIP != "horizontal":
        raise ValueError(
            f"INPUT.RANDOM_FLIP {cfg.INPUT.RANDOM_FLIP!r} would swap the top and bottom landmarks "
            "of every garment; set 'none' (or 'horizontal' with a flip map)"
        )
    unflippable = [name for name in cfg.DATASETS.TRAIN
                   if not MetadataCatalog.get(name).get("keypoint_flip_map")]
    if unflippable:
        raise ValueError(
            f"INPUT.RANDOM_FLIP 'horizontal' needs a landmark flip map, which "
            f"{', '.join(unflippable)} do not register (keypoint_flip_map); "
            "set INPUT.RANDOM_FLIP 'none'"
        )
    return utils.create_keypoint_hflip_indices(cfg.DATASETS.TRAIN)
