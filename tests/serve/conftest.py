"""A real (tiny, untrained) model and the gallery the project's own build tool makes with it, served
by the real app: in-process through FastAPI's TestClient, and on 127.0.0.1 by uvicorn.

As in tests/tools, the model is untrained: these tests prove that the service carries photos,
detections, embeddings and gallery records through correctly, not that it recognises garments.
"""

from __future__ import annotations

import importlib.util
import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image

from matchrcnn.config import setup_cfg
from matchrcnn.data.catalog import DatasetCatalog
from matchrcnn.retrieval.model import RetrievalModel
from matchrcnn.serve.app import ServeSettings, create_app
from matchrcnn.serve.service import SearchService
from tests.modeling.conftest import TINY
from tests.tools.conftest import (  # noqa: F401 - fixtures shared with the tool tests
    CONFIG,
    REPO,
    datasets_root,
    model_args,
    other_weights,
    save_tiny_model,
    tool_main,
)

build_main = tool_main("build_gallery")


def tool_module(name: str) -> ModuleType:
    """tools/<name>.py as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

TRAIN_SPLIT = "synthetic_train"
TOKEN = "test-token-0123456789abcdef"


@pytest.fixture(scope="session")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/tools' tiny model, its mask logits set to +4 everywhere: each detection's mask is
    then its whole box, which makes its outline known (an untrained mask head gives masks
    around the 0.5 threshold, often empty)."""
    path = save_tiny_model(tmp_path_factory.mktemp("model") / "model.pth", seed=0)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["model"]["roi_heads.mask_predictor.mask_fcn_logits.weight"].zero_()
    checkpoint["model"]["roi_heads.mask_predictor.mask_fcn_logits.bias"].fill_(4.0)
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="session")
def session_datasets(datasets_root: Path) -> Iterator[Path]:  # noqa: F811
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MATCHRCNN_DATASETS", str(datasets_root))
        yield datasets_root


@pytest.fixture(scope="session")
def gallery_dir(session_datasets: Path, weights: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The train split's shop images, every detection kept, one image per model call (so that
    a query of one of them computes exactly what the build stored)."""
    out = tmp_path_factory.mktemp("serve") / "gallery"
    assert build_main([*model_args(weights), "--images", TRAIN_SPLIT, "--out", str(out),
                       "--min-score", "0", "--batch-size", "1", "--no-progress", *TINY]) == 0
    return out


def load_tiny_model(weights_path: Path) -> RetrievalModel:
    return RetrievalModel(setup_cfg(CONFIG, [*TINY, "MODEL.WEIGHTS", str(weights_path)]))


@pytest.fixture(scope="session")
def model(weights: Path) -> RetrievalModel:
    return load_tiny_model(weights)


@pytest.fixture(scope="session")
def service(model: RetrievalModel, gallery_dir: Path) -> Iterator[SearchService]:
    service = SearchService(model, gallery_dir)
    yield service
    service.close()


def make_client(service: SearchService, **settings: object) -> TestClient:
    return TestClient(create_app(service, ServeSettings(**settings)))


@pytest.fixture(scope="session")
def client(service: SearchService) -> Iterator[TestClient]:
    with make_client(service) as client:
        yield client


@pytest.fixture(scope="session")
def shop_record(session_datasets: Path) -> dict:
    return next(r for r in DatasetCatalog.get(TRAIN_SPLIT) if r["source"] == "shop")


@pytest.fixture(scope="session")
def user_photo(session_datasets: Path) -> Path:
    """A synthetic user photo of the validation split (not in the gallery)."""
    record = next(r for r in DatasetCatalog.get("synthetic_validation")
                  if r["source"] == "user")
    return Path(record["file_name"])


def jpeg_bytes(size: tuple[int, int] = (64, 48), colour: tuple[int, int, int] = (200, 60, 40),
               ) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def search(client: TestClient, photo: Path | bytes, name: str = "photo.jpg",
           content_type: str = "image/jpeg", **fields: object):
    """POST /api/search with the photo as multipart part 'image' and the form ``fields``."""
    data = photo.read_bytes() if isinstance(photo, Path) else photo
    return client.post("/api/search", files={"image": (name, data, content_type)},
                       data={key: str(value) for key, value in fields.items()})


class LiveServer:
    """uvicorn serving an app on 127.0.0.1 (a free port) in a thread, as the tool serves it."""

    def __init__(self, app: object) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._socket]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._socket.close()


@pytest.fixture(scope="session")
def live_url(service: SearchService) -> Iterator[str]:
    with LiveServer(create_app(service, ServeSettings())) as server:
        yield server.url
