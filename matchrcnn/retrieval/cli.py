"""What the retrieval tools share: model arguments, index settings, and how a run ends.

A tool's run ends in one of three ways: done (exit 0), a problem with its input or environment
(one ``error: ...`` line on stderr, exit 1, no traceback: the message names the file and what is
wrong), or interrupted (exit 130, with what was kept). Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from matchrcnn.config import ConfigError, setup_cfg
from matchrcnn.data.catalog import DatasetFilesError
from matchrcnn.data.image_info import ImageInfoError
from matchrcnn.data.images import DEFAULT_MAX_PIXELS, ImageInputError
from matchrcnn.evaluation.entries import EntriesError
from matchrcnn.modeling.weights import WeightsError
from matchrcnn.retrieval.gallery import GalleryError
from matchrcnn.retrieval.index import INDEX_KINDS, FaissIndexError, IndexConfig
from matchrcnn.retrieval.model import RetrievalModel
from matchrcnn.utils.errors import UsageError

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
INPUT_ERRORS = (UsageError, ConfigError, DatasetFilesError, ImageInfoError, ImageInputError,
                GalleryError, FaissIndexError, WeightsError, EntriesError)
"""The project's errors for problems with what the user gave (options, config, dataset files,
images, galleries, weights, result files). Any other exception, a ValueError or OSError included,
is a bug and keeps its traceback."""


class Interrupted(Exception):
    """A run stopped by Ctrl-C; the message says what was kept."""


def add_model_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--config-file", required=required, metavar="FILE",
                        help="the model's config (e.g. configs/synthetic/quickstart.yaml)")
    parser.add_argument("--weights", required=required, metavar="FILE",
                        help="trained weights (a checkpoint such as model_final.pth)")


def add_opts(parser: argparse.ArgumentParser) -> None:
    """Trailing KEY VALUE config overrides; add last."""
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="KEY VALUE config overrides, e.g. MODEL.DEVICE cpu")


def add_max_pixels(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                        help=f"refuse images of more than N pixels (width x height; default "
                             f"{DEFAULT_MAX_PIXELS:,})")


def add_index_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", choices=INDEX_KINDS, default=None,
                        help="FAISS index kind; default: flat for a new gallery, an existing "
                             "gallery keeps its own")
    parser.add_argument("--index-setting", action="append", default=[], metavar="KEY=VALUE",
                        help="an index setting (nlist, m, nbits, nprobe, train_size, hnsw_m, "
                             "ef_construction, ef_search, rerank); repeat for several")


def index_config(kind: str | None, settings: list[str]) -> IndexConfig | None:
    """The IndexConfig the arguments ask for; None (keep the gallery's) when they ask nothing."""
    if kind is None and not settings:
        return None
    values: dict[str, object] = {"kind": kind or "flat"}
    for setting in settings:
        key, equals, value = setting.partition("=")
        if not equals or not value.strip().lstrip("-").isdigit():
            raise UsageError(f"--index-setting {setting!r}: expected KEY=INTEGER, e.g. nprobe=64")
        values[key.strip()] = int(value)
    return IndexConfig.from_json(values)


def load_model(config_file: str, weights: str, opts: list[str]) -> RetrievalModel:
    """The model of ``config_file`` with ``weights`` (overrides applied last)."""
    return RetrievalModel(setup_cfg(config_file, [*opts, "MODEL.WEIGHTS", weights]))


def run_tool(run: Callable[[], int]) -> int:
    """Run a tool's body and turn input problems and Ctrl-C into a message and an exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return run()
    except Interrupted as interrupted:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except INPUT_ERRORS as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_ERROR


def one_line(error: BaseException) -> str:
    """The message on one line (some messages put a command to run on a line of its own)."""
    return " ".join(part.strip() for part in str(error).splitlines() if part.strip())
