"""Match R-CNN for clothing: detection, segmentation, landmarks, consumer-to-shop retrieval.

Importing the package costs nothing beyond Python: scoring result files, converting datasets and
generating the synthetic one need neither torch nor FAISS, which load only with the modules that
use them. Whether torchvision's compiled ops run is checked where a model is built
(``matchrcnn.modeling``).
"""

__version__ = "0.1.0"
