"""Match R-CNN on torchvision's detection stack: backbone, heads, losses, assembly, predictor.

Importing it checks that torchvision's compiled ops run with the installed torch, so a
mismatched install fails where a model is built, with an explanation, rather than inside a
training step.
"""

from matchrcnn._torchvision_check import check_torchvision_ops
from matchrcnn.modeling.backbone import build_backbone, build_resnet_fpn_backbone
from matchrcnn.modeling.matchrcnn import MatchRCNN, build_model, check_targets
from matchrcnn.modeling.predictor import Predictor, load_image, resolve_device
from matchrcnn.modeling.weights import WeightsError, load_model_weights

check_torchvision_ops()

__all__ = [
    "MatchRCNN",
    "Predictor",
    "WeightsError",
    "build_backbone",
    "build_model",
    "build_resnet_fpn_backbone",
    "check_targets",
    "load_image",
    "load_model_weights",
    "resolve_device",
]
