"""Match R-CNN's own RoI branches; importing the package registers them (matchrcnn.modeling.branch).

Registration order is build order: the landmark head, then the match network.
"""

from matchrcnn.modeling.branches.landmark import LandmarkBranch, landmark_layout
from matchrcnn.modeling.branches.match import MATCH_INPUTS, MatchBranch

__all__ = ["MATCH_INPUTS", "LandmarkBranch", "MatchBranch", "landmark_layout"]
