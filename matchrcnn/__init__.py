"""Match R-CNN for clothing: detection, segmentation, landmarks, consumer-to-shop retrieval."""

from matchrcnn._torchvision_check import check_torchvision_ops

__version__ = "0.1.0"

check_torchvision_ops()
