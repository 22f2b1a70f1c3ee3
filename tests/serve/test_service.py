"""tools/serve_gallery.py as a user starts it: the model loaded once, concurrent searches answered
as one at a time, the gallery left untouched and closed to builds while served, and galleries it
must not serve refused at start."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import pytest

from matchrcnn.data.catalog import DatasetCatalog
from matchrcnn.retrieval import cli
from matchrcnn.retrieval.gallery import (
    EmptyGalleryError,
    Gallery,
    GalleryBusyError,
    GalleryMismatchError,
)
from matchrcnn.retrieval.model import RetrievalModel
from matchrcnn.serve.service import SearchService
from tests.modeling.conftest import TINY
from tests.retrieval.conftest import snapshot
from tests.serve.conftest import (
    TRAIN_SPLIT,
    LiveServer,
    build_main,
    load_tiny_model,
    make_client,
    model_args,
    search,
    tool_main,
    tool_module,
)
from tests.tools.conftest import REPO

serve_main = tool_main("serve_gallery")


@pytest.fixture
def gallery_copy(gallery_dir: Path, tmp_path: Path) -> Path:
    """A gallery of its own (the session's is held by the session's service)."""
    return Path(shutil.copytree(gallery_dir, tmp_path / "gallery"))


def user_photos(count: int) -> list[Path]:
    records = [r for r in DatasetCatalog.get("synthetic_validation") if r["source"] == "user"]
    return [Path(record["file_name"]) for record in records[:count]]


def test_the_tool_loads_the_model_once_and_serves_concurrent_searches_correctly(
        session_datasets: Path, weights: Path, gallery_copy: Path, monkeypatch) -> None:
    """The tool as started from the command line, uvicorn on 127.0.0.1 included; only the
    endless serving is replaced by a bounded run: 6 distinct searches one at a time, then the
    same 6 sent 3 times over by 9 clients at once. Every concurrent answer equals its
    one-at-a-time answer, and the model was built once for all of them."""
    loads = []

    class CountedModel(RetrievalModel):
        def __init__(self, cfg) -> None:
            loads.append(cfg.MODEL.WEIGHTS)
            super().__init__(cfg)

    monkeypatch.setattr(cli, "RetrievalModel", CountedModel)
    jobs = [(photo, {"topk": topk, "min_score": "0", "max_items": 3})
            for photo in user_photos(3) for topk in (2, 7)]
    answers: dict[str, list] = {}

    def bounded_run(app, host: str, port: int, log_level: str) -> None:
        assert (host, port) == ("127.0.0.1", 8000)  # the defaults; the test server picks a port
        with LiveServer(app) as server, httpx2.Client(base_url=server.url, timeout=60) as http:
            def send(job: tuple[Path, dict]) -> dict:
                photo, fields = job
                response = http.post("/api/search", data=fields,
                                     files={"image": (photo.name, photo.read_bytes(),
                                                      "image/jpeg")})
                assert response.status_code == 200, response.text
                return response.json()

            answers["one at a time"] = [send(job) for job in jobs]
            with ThreadPoolExecutor(9) as pool:
                answers["at once"] = list(pool.map(send, jobs * 3))

    monkeypatch.setattr("uvicorn.run", bounded_run)
    assert serve_main([*model_args(weights), "--gallery", str(gallery_copy), *TINY]) == 0
    assert loads == [str(weights)]
    assert answers["at once"] == answers["one at a time"] * 3
    assert all(answer["items"] for answer in answers["one at a time"])
    assert len({str(answer) for answer in answers["one at a time"]}) == len(jobs)
    with Gallery.open(gallery_copy, writable=True):  # the service closed it, lock released
        pass


@pytest.mark.parametrize(("opts", "enabled"), [
    ((), True), (("TEST.CLASS_AGNOSTIC_NMS.ENABLED", "False"), False)])
def test_the_tool_serves_one_detection_per_garment_unless_told_otherwise(
        session_datasets: Path, weights: Path, gallery_copy: Path, monkeypatch,
        opts: tuple[str, ...], enabled: bool) -> None:
    """Class-agnostic suppression is on in the served model, and the overrides turn it off;
    either way the gallery (built with it on) is served."""
    configs = []

    class RecordedModel(RetrievalModel):
        def __init__(self, cfg) -> None:
            configs.append(cfg)
            super().__init__(cfg)

    monkeypatch.setattr(cli, "RetrievalModel", RecordedModel)
    monkeypatch.setattr("uvicorn.run", lambda app, **settings: None)
    assert serve_main([*model_args(weights), "--gallery", str(gallery_copy), *TINY, *opts]) == 0
    assert [cfg.TEST.CLASS_AGNOSTIC_NMS.ENABLED for cfg in configs] == [enabled]


def test_a_gallery_of_another_model_is_refused_at_start(gallery_dir: Path, other_weights: Path,
                                                        capsys) -> None:
    with pytest.raises(GalleryMismatchError, match="was built by model"):
        SearchService(load_tiny_model(other_weights), gallery_dir)
    assert serve_main([*model_args(other_weights), "--gallery", str(gallery_dir), *TINY]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"error: gallery {gallery_dir} was built by model")


def test_an_empty_gallery_is_refused_at_start(model: RetrievalModel, tmp_path: Path) -> None:
    Gallery.create(tmp_path / "empty", model.fingerprint, model.metric).close()
    with pytest.raises(EmptyGalleryError, match="holds no items"):
        SearchService(model, tmp_path / "empty")
    with pytest.raises(Exception, match="holds no gallery"):
        SearchService(model, tmp_path / "nothing")


def test_a_gallery_being_built_is_not_served(model: RetrievalModel, gallery_copy: Path) -> None:
    with (Gallery.open(gallery_copy, model.fingerprint, model.embed_dim, writable=True),
          pytest.raises(GalleryBusyError, match="being written by another process")):
        SearchService(model, gallery_copy)
    SearchService(model, gallery_copy).close()


def test_the_gallery_is_read_only_while_served(model: RetrievalModel, gallery_copy: Path,
                                               weights: Path, session_datasets: Path,
                                               user_photo: Path) -> None:
    """Searches and item requests change no byte of the gallery; a build started meanwhile is
    refused and changes nothing either; once the service is closed, builds work again."""
    before = snapshot(gallery_copy)
    service = SearchService(model, gallery_copy)
    try:
        with make_client(service) as client:
            for topk in (1, 5):
                assert search(client, user_photo, min_score=0.0, topk=topk).status_code == 200
            assert client.get("/api/items/3/crop").status_code == 200
            assert client.get("/api/items/3/image").status_code == 200
        build = [*model_args(weights), "--images", TRAIN_SPLIT, "--out", str(gallery_copy),
                 "--min-score", "0", "--no-progress", *TINY]
        assert build_main(build) == 1
        assert snapshot(gallery_copy) == before
    finally:
        service.close()
    assert build_main(build) == 0  # nothing new to add, but it may write again


def test_make_demo_ends_by_printing_the_command_that_serves_its_gallery() -> None:
    """The last line `make demo` prints is the serve command, for the gallery and weights the
    demo itself built, and the tool accepts it as it is."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # --no-print-directory: under `make test` this make is a sub-make, which would print where it is
    dry_run = subprocess.run(["make", "--no-print-directory", "-n", "demo"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout
    commands = [shlex.split(command) for command in dry_run.replace("\\\n", " ").splitlines()]
    echo, printed = commands[-1]
    assert echo == "echo"
    program, tool, *argv = shlex.split(printed)
    assert (program, tool) == (".venv/bin/python", "tools/serve_gallery.py")
    build = next(command for command in commands if "tools/build_gallery.py" in command)
    served = tool_module("serve_gallery").parse_args(argv)
    assert served.gallery == build[build.index("--out") + 1]
    assert served.weights == build[build.index("--weights") + 1]
    assert served.config_file == build[build.index("--config-file") + 1]
    assert (served.host, served.port, served.token, served.opts) == ("127.0.0.1", 8000, None, [])
