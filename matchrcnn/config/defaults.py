"""The torchvision engine's config keys with their defaults, named as detectron2 names them where
it can.

Values follow torchvision's conventions where they differ from detectron2's: images are RGB in
[0, 1], so MODEL.PIXEL_MEAN/STD are ImageNet's statistics on that scale. The RoI branches declare
their own keys (MODEL.LANDMARK_ON with MODEL.ROI_LANDMARK_HEAD.*, MODEL.MATCH_ON with
MODEL.MATCH_HEAD.*: matchrcnn/modeling/branches/), which ``get_cfg`` adds, as detectron2's
``add_matchrcnn_config`` does; the engine-independent keys of our own
(MODEL.ROI_HEADS.CANONICAL_BOX_SIZE, DATALOADER.PAIR_SAMPLER.*, TEST.CLASS_AGNOSTIC_NMS.*) are
declared by ``add_shared_config`` for both engines.
"""

from __future__ import annotations

from fvcore.common.config import CfgNode as CN

_C = CN()

_C.MODEL = CN()
_C.MODEL.META_ARCHITECTURE = "MatchRCNN"
# "auto" picks CUDA when it is available, else CPU; any torch device string works too.
_C.MODEL.DEVICE = "auto"
# The weights to start from ("" for none): a checkpoint of this model (loaded strictly: every
# tensor must fit), or a foreign file whose tensors load where names and shapes fit (a table says
# which): a torchvision Mask/Faster R-CNN state_dict (COCO weights, v1 or v2) or a torchvision
# ResNet state_dict (ImageNet). "torchvision://WEIGHTS_NAME" fetches torchvision's own file
# through its cache, e.g. "torchvision://MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1".
# A file that covers the backbone makes MODEL.BACKBONE.PRETRAINED moot: nothing is downloaded.
_C.MODEL.WEIGHTS = ""
_C.MODEL.PIXEL_MEAN = (0.485, 0.456, 0.406)
_C.MODEL.PIXEL_STD = (0.229, 0.224, 0.225)
_C.MODEL.MASK_ON = True

_C.MODEL.BACKBONE = CN()
# "imagenet": torchvision's ImageNet weights; a path: a torchvision ResNet state_dict; "": none.
_C.MODEL.BACKBONE.PRETRAINED = ""
# As in detectron2: 0 trains everything, 1 freezes the stem, k > 1 the stem and res2..res{k}.
_C.MODEL.BACKBONE.FREEZE_AT = 2

_C.MODEL.RESNETS = CN()
_C.MODEL.RESNETS.DEPTH = 50
# "FrozenBN" (for ImageNet-initialised backbones), "BN" or "GN" (32 groups; trains from scratch).
_C.MODEL.RESNETS.NORM = "FrozenBN"

_C.MODEL.FPN = CN()
_C.MODEL.FPN.OUT_CHANNELS = 256
# Normalisation after the FPN's convs, and (ROI_*_HEAD.NORM) after each conv of a head: "" (none),
# "GN" (GroupNorm, 32 groups), as detectron2's from-scratch configs set them (He et al.,
# "Rethinking ImageNet Pre-training", 2019; in the quickstart's 600 iterations they did not help),
# or "BN" (BatchNorm, as torchvision's maskrcnn_resnet50_fpn_v2).
_C.MODEL.FPN.NORM = ""

_C.MODEL.ANCHOR_GENERATOR = CN()
# One tuple of sizes per FPN level (P2..P6), detectron2's layout.
_C.MODEL.ANCHOR_GENERATOR.SIZES = ((32,), (64,), (128,), (256,), (512,))
_C.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = ((0.5, 1.0, 2.0),)

_C.MODEL.RPN = CN()
# One entry per 3x3 conv of the RPN head before its two 1x1 outputs, detectron2's key; -1 keeps the
# FPN's width (the only width torchvision's RPNHead has). (-1, -1) is maskrcnn_resnet50_fpn_v2's.
_C.MODEL.RPN.CONV_DIMS = (-1,)
_C.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 2000
_C.MODEL.RPN.PRE_NMS_TOPK_TEST = 1000
_C.MODEL.RPN.POST_NMS_TOPK_TRAIN = 2000
_C.MODEL.RPN.POST_NMS_TOPK_TEST = 1000
_C.MODEL.RPN.NMS_THRESH = 0.7
_C.MODEL.RPN.IOU_THRESHOLDS = (0.3, 0.7)
_C.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 256
_C.MODEL.RPN.POSITIVE_FRACTION = 0.5

_C.MODEL.ROI_HEADS = CN()
_C.MODEL.ROI_HEADS.NUM_CLASSES = 13
_C.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 512
_C.MODEL.ROI_HEADS.POSITIVE_FRACTION = 0.25
# One threshold: proposals at or above it are foreground, below it background.
_C.MODEL.ROI_HEADS.IOU_THRESHOLDS = (0.5,)
_C.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.05
_C.MODEL.ROI_HEADS.NMS_THRESH_TEST = 0.5

_C.MODEL.ROI_BOX_HEAD = CN()
_C.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
_C.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = 2
# detectron2's box head: NUM_CONV 3x3 convs of CONV_DIM channels (each followed by NORM), then
# NUM_FC fully connected layers of FC_DIM; the default is the paper's two FC layers.
_C.MODEL.ROI_BOX_HEAD.NUM_CONV = 0
_C.MODEL.ROI_BOX_HEAD.CONV_DIM = 256
_C.MODEL.ROI_BOX_HEAD.NUM_FC = 2
_C.MODEL.ROI_BOX_HEAD.FC_DIM = 1024
_C.MODEL.ROI_BOX_HEAD.NORM = ""
_C.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0)

_C.MODEL.ROI_MASK_HEAD = CN()
_C.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION = 14
_C.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO = 2
_C.MODEL.ROI_MASK_HEAD.NUM_CONV = 4
_C.MODEL.ROI_MASK_HEAD.CONV_DIM = 256
_C.MODEL.ROI_MASK_HEAD.NORM = ""

_C.INPUT = CN()
# The model resizes its inputs (torchvision's convention); one of these shorter sides per image.
_C.INPUT.MIN_SIZE_TRAIN = (800,)
_C.INPUT.MAX_SIZE_TRAIN = 1333
_C.INPUT.MIN_SIZE_TEST = 800
_C.INPUT.MAX_SIZE_TEST = 1333
# "horizontal" mirrors half the training images, with their boxes, masks and landmarks (moved to
# their mirror slots by the layout's flip map); "none" never. As in detectron2, on by default; a
# layout without a flip map (SAL-HG's) needs "none".
_C.INPUT.RANDOM_FLIP = "horizontal"
# The flip map: "" for the layout's own (DeepFashion2's table, matchrcnn/data/
# deepfashion2_flip_pairs.json), or a JSON file {"pairs": [[slot, slot], ...]} (0-based slots) to
# use instead, such as the one tools/check_flip_map.py --write-pairs writes from your annotations.
_C.INPUT.FLIP_PAIRS = ""

_C.DATASETS = CN()
_C.DATASETS.TRAIN = ("deepfashion2_train",)
_C.DATASETS.TEST = ("deepfashion2_validation",)

_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4
_C.SOLVER = CN()
_C.SOLVER.IMS_PER_BATCH = 16
# "SGD" (with MOMENTUM) as detectron2, or "AdamW" (betas 0.9, 0.999), which converges faster in
# short from-scratch schedules such as the CPU quickstart.
_C.SOLVER.OPTIMIZER = "SGD"
_C.SOLVER.BASE_LR = 0.02
_C.SOLVER.MOMENTUM = 0.9
_C.SOLVER.WEIGHT_DECAY = 0.0001
_C.SOLVER.GAMMA = 0.1
_C.SOLVER.STEPS = (60000, 80000)
_C.SOLVER.MAX_ITER = 90000
_C.SOLVER.WARMUP_FACTOR = 0.001
_C.SOLVER.WARMUP_ITERS = 1000
_C.SOLVER.CHECKPOINT_PERIOD = 5000
_C.SOLVER.CLIP_GRADIENTS = CN()
_C.SOLVER.CLIP_GRADIENTS.ENABLED = False
# "value" or "norm", as in detectron2.
_C.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "value"
_C.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1.0
_C.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0
_C.SOLVER.AMP = CN()
_C.SOLVER.AMP.ENABLED = False

_C.TEST = CN()
# Evaluate every this many iterations (0: only at the end).
_C.TEST.EVAL_PERIOD = 0
_C.TEST.DETECTIONS_PER_IMAGE = 100
# Mixed precision (torch.autocast, float16) for inference on CUDA; ignored on CPU.
_C.TEST.AMP = CN()
_C.TEST.AMP.ENABLED = False

_C.OUTPUT_DIR = "./output"
_C.SEED = 0


def add_shared_config(cfg: CN) -> None:
    """Keys of our own that both engines read, with their defaults (``add_matchrcnn_config``
    adds them to a detectron2 config)."""
    # The box size (input pixels, square root of the area) whose RoI features are pooled from P4
    # (by every RoI stream); a box half that size reads P3, twice that size P5 (FPN paper, eq. 1).
    # 224 suits 800-pixel images; for smaller images, scale it down with them, or the heads read
    # mostly the shallow P2 and P3.
    cfg.MODEL.ROI_HEADS.CANONICAL_BOX_SIZE = 224

    cfg.DATALOADER.PAIR_SAMPLER = type(cfg)()
    # Share of each training batch drawn from images unrelated to the batch's pairs (extra
    # negatives).
    cfg.DATALOADER.PAIR_SAMPLER.UNRELATED_FRACTION = 0.25

    # After per-class NMS, keep one detection per garment: a detection whose box overlaps a
    # higher-scoring one of any class by more than IOU_THRESH is dropped. The demo, query and
    # serving tools turn it on; evaluation follows this key (off: per-class results, as COCO
    # scores them).
    cfg.TEST.CLASS_AGNOSTIC_NMS = type(cfg)()
    cfg.TEST.CLASS_AGNOSTIC_NMS.ENABLED = False
    cfg.TEST.CLASS_AGNOSTIC_NMS.IOU_THRESH = 0.7


add_shared_config(_C)
