"""Match R-CNN's own heads as plain modules over pooled RoI features (no framework types)."""

from matchrcnn.modeling.heads.heatmaps import decode_heatmaps
from matchrcnn.modeling.heads.landmark import (
    MAX_LANDMARKS,
    LandmarkHead,
    LandmarkPredictor,
    heatmaps_to_landmarks,
    landmark_decoder,
    pack_slices,
    unpack_slices,
)
from matchrcnn.modeling.heads.match import MatchHead, SimilarityHead

__all__ = [
    "MAX_LANDMARKS",
    "LandmarkHead",
    "LandmarkPredictor",
    "MatchHead",
    "SimilarityHead",
    "decode_heatmaps",
    "heatmaps_to_landmarks",
    "landmark_decoder",
    "pack_slices",
    "unpack_slices",
]
