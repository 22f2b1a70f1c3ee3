"""Consumer-to-shop retrieval over a gallery of shop items: FAISS for speed, SQLite for the record,
the match network for the order.

- ``metric``: the similarity head as a weighted squared distance, and the scaling that lets FAISS
  L2 search serve it.
- ``index``: FAISS index kinds (flat, IVF-PQ, HNSW), building, saving, recall measurement.
- ``records``: ShopImage (what is added), GalleryItem and Hit (what comes back).
- ``gallery``: the gallery directory, incremental and crash-safe.
- ``search``: ranked search, its brute-force reference, official retrieval result entries.
- ``fingerprint``: the identity of the model that built a gallery.

Around them, what the tools run: ``model`` (the predictor with its fingerprint and similarity),
``images`` (reading files with clear errors), ``sources`` (what a build indexes), ``inference``
(same-size batches over many files), ``build`` (indexing into a gallery), ``query`` and
``visualize`` (query by image, results.json, query.png), ``evaluate`` (official retrieval results
from a model on a split) and ``cli`` (arguments and exit codes shared by the tools).
"""

from matchrcnn.retrieval.gallery import (
    AddResult,
    EmptyGalleryError,
    Gallery,
    GalleryBusyError,
    GalleryError,
    GalleryMismatchError,
)
from matchrcnn.retrieval.index import FaissIndexError, IndexConfig, recall_at_k
from matchrcnn.retrieval.metric import MatchMetric, match_probability
from matchrcnn.retrieval.records import GalleryItem, Hit, ShopImage
from matchrcnn.retrieval.search import exact_search, retrieval_entries, search, search_recall

__all__ = [
    "AddResult",
    "EmptyGalleryError",
    "FaissIndexError",
    "Gallery",
    "GalleryBusyError",
    "GalleryError",
    "GalleryItem",
    "GalleryMismatchError",
    "Hit",
    "IndexConfig",
    "MatchMetric",
    "ShopImage",
    "exact_search",
    "match_probability",
    "recall_at_k",
    "retrieval_entries",
    "search",
    "search_recall",
]
