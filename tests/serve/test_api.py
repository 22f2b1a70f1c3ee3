"""Every endpoint of the app through FastAPI's TestClient, over a real tiny model and the gallery
that tools/build_gallery.py made with it."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from matchrcnn.data.images import read_image
from matchrcnn.retrieval import Gallery
from matchrcnn.retrieval.model import RetrievalModel
from matchrcnn.serve.crops import CROP_SIDE
from matchrcnn.serve.service import SearchService
from tests.modeling.conftest import TINY
from tests.serve.conftest import model_args, search, tool_main

query_main = tool_main("query_gallery")
SVG_NAMESPACE = "http://www.w3.org/2000/svg"
"""A name in the page, not an address it loads."""


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_gallery_reports_what_the_gallery_holds(client: TestClient, gallery_dir: Path,
                                                model: RetrievalModel) -> None:
    info = client.get("/api/gallery").json()
    with Gallery.open(gallery_dir) as gallery:
        assert info["items"] == gallery.item_count > 0
        assert info["images"] == gallery.image_count
    assert info["model_fingerprint"] == model.fingerprint
    assert info["embedding_size"] == model.embed_dim == 24
    assert info["index"] == {"kind": "flat", "dim": 24}
    assert [c["name"] for c in info["categories"]][:2] == ["short_sleeved_shirt",
                                                           "long_sleeved_shirt"]
    assert len(info["categories"]) == 13


def test_search_answers_what_the_query_tool_writes(client: TestClient, user_photo: Path,
                                                   weights: Path, gallery_dir: Path,
                                                   tmp_path: Path) -> None:
    """The same photo and settings through the API and through tools/query_gallery.py: the same
    garments (box, class, score) and, per garment, the same shop items in the same order with
    the same match probabilities, categories, pair_ids, styles and image ids."""
    fields = {"topk": 5, "min_score": 0.0, "max_items": 4}
    response = search(client, user_photo, name=user_photo.name, **fields)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert query_main([*model_args(weights), "--gallery", str(gallery_dir), "--image",
                       str(user_photo), "--out", str(tmp_path), "--topk", "5", "--min-score",
                       "0", "--max-items", "4", *TINY]) == 0
    expected = json.loads((tmp_path / "results.json").read_text())
    assert answer["image"] == user_photo.name
    assert (answer["height"], answer["width"]) == read_image(user_photo).shape[:2]
    assert answer["model_fingerprint"] == expected["model_fingerprint"]
    assert (answer["topk"], answer["min_score"], answer["max_items"]) == (5, 0.0, 4)
    assert len(answer["items"]) == len(expected["items"]) == 4
    keys = ("rank", "image_id", "box", "category_id", "category", "detection_score",
            "match_score", "match_logit", "pair_id", "style")
    with Gallery.open(gallery_dir) as gallery:
        for garment, reference in zip(answer["items"], expected["items"], strict=True):
            for key in ("box", "category_id", "category", "score"):
                assert garment[key] == reference[key]
            assert len(garment["retrieved"]) == 5
            assert [[hit[key] for key in keys] for hit in garment["retrieved"]] == [
                [hit[key] for key in keys] for hit in reference["retrieved"]]
            margins = [hit["match_logit"] for hit in garment["retrieved"]]
            assert margins == sorted(margins, reverse=True)
            stored = gallery.items([hit["item_id"] for hit in garment["retrieved"]])
            for hit, item, ref in zip(garment["retrieved"], stored, reference["retrieved"],
                                      strict=True):
                assert item.image_path == ref["image_path"]
                assert "image_path" not in hit
                assert hit["image_url"] == f"/api/items/{hit['item_id']}/image"
                assert hit["crop_url"] == f"/api/items/{hit['item_id']}/crop"


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_large_photo_is_searched_at_the_models_input_size(client: TestClient,
                                                            service: SearchService,
                                                            user_photo: Path) -> None:
    """A photo longer than INPUT.MAX_SIZE_TEST (128 here) is searched as its copy scaled down to
    that size, and answered in its own pixels: exactly the copy's answer, boxes and outlines
    scaled up."""
    photo = read_image(user_photo)
    big = np.asarray(Image.fromarray(photo).resize((photo.shape[1] * 3, photo.shape[0] * 3)))
    copy, scale = service.working_copy(big)
    assert max(copy.shape[:2]) == service.input_side == 128
    assert scale == pytest.approx(max(big.shape[:2]) / 128)
    fields = {"min_score": 0.0, "max_items": 4, "topk": 3}
    answer = search(client, png_bytes(big), name="big.png", content_type="image/png", **fields)
    direct = search(client, png_bytes(copy), name="big.png", content_type="image/png", **fields)
    answer, direct = answer.json(), direct.json()
    assert (answer["height"], answer["width"]) == big.shape[:2]
    assert (direct["height"], direct["width"]) == copy.shape[:2]
    assert len(answer["items"]) == len(direct["items"]) == 4
    for garment, reference in zip(answer["items"], direct["items"], strict=True):
        assert garment["box"] == pytest.approx([value * scale for value in reference["box"]])
        assert garment["retrieved"] == reference["retrieved"]
        assert garment["score"] == reference["score"]
        for polygon, small in zip(garment["outline"], reference["outline"], strict=True):
            assert np.allclose(polygon, np.array(small) * scale)
    unchanged, factor = service.working_copy(copy)
    assert unchanged is copy and factor == 1.0


def test_outlines_trace_the_masks(client: TestClient, user_photo: Path) -> None:
    """This model's masks are whole boxes (conftest): each outline is one polygon around the
    garment's box, to a pixel or two."""
    answer = search(client, user_photo, min_score=0.0, max_items=5).json()
    assert answer["items"]
    for garment in answer["items"]:
        assert len(garment["outline"]) == 1
        points = np.array(garment["outline"][0])
        assert points.ndim == 2 and points.shape[1] == 2 and len(points) >= 4
        traced = [*points.min(axis=0), *points.max(axis=0)]
        assert np.allclose(traced, garment["box"], atol=2.0), (traced, garment["box"])


def test_search_options(client: TestClient, user_photo: Path) -> None:
    everything = search(client, user_photo, min_score=0.0, max_items=50, topk=3).json()
    scores = [garment["score"] for garment in everything["items"]]
    assert len(scores) > 2 and scores == sorted(scores, reverse=True)
    threshold = scores[len(scores) // 2]
    some = search(client, user_photo, min_score=threshold, max_items=50, topk=3).json()
    assert [g["score"] for g in some["items"]] == [s for s in scores if s >= threshold]
    assert len(search(client, user_photo, min_score=0.0, max_items=2).json()["items"]) == 2
    same = search(client, user_photo, min_score=0.0, max_items=3, topk=4,
                  same_category="true").json()
    assert same["same_category"] is True
    for garment in same["items"]:
        assert garment["retrieved"]
        assert {hit["category_id"] for hit in garment["retrieved"]} == {garment["category_id"]}


def test_item_image_is_the_stored_shop_image(client: TestClient, gallery_dir: Path) -> None:
    with Gallery.open(gallery_dir) as gallery:
        item = gallery.items([1])[0]
    response = client.get("/api/items/1/image")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content == Path(item.image_path).read_bytes()


def test_item_crop_is_the_items_box(client: TestClient, gallery_dir: Path) -> None:
    with Gallery.open(gallery_dir) as gallery:
        items = gallery.items(list(range(1, 6)))
    for item in items:
        response = client.get(f"/api/items/{item.row}/crop")
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/jpeg"
        crop = Image.open(io.BytesIO(response.content))
        x1, y1, x2, y2 = item.box
        width, height = np.ceil(x2) - int(x1), np.ceil(y2) - int(y1)
        assert max(crop.size) <= CROP_SIDE
        assert abs(crop.width - width) <= 1 and abs(crop.height - height) <= 1
        shop = read_image(item.image_path)
        expected = shop[int(y1):int(y1) + crop.height, int(x1):int(x1) + crop.width]
        assert np.abs(np.asarray(crop).astype(int) - expected).mean() < 12  # JPEG's loss


def test_unknown_item_ids(client: TestClient) -> None:
    for path in ("/api/items/999999/crop", "/api/items/999999/image"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.json() == {"detail": "gallery holds no item 999999"}
    for path in ("/api/items/0/crop", "/api/items/abc/image", "/api/items/-3/crop",
                 f"/api/items/{2**64}/crop"):
        response = client.get(path)
        assert response.status_code == 422, path
        assert response.json()["detail"][0]["loc"] == ["path", "item_id"]


def test_items_are_named_by_id_only(client: TestClient, gallery_dir: Path) -> None:
    """No route takes a path: traversal attempts are unknown routes."""
    for path in ("/api/items/../../etc/passwd", "/api/items/1/image/../../../etc/passwd",
                 f"/api/items/{gallery_dir}/image", "/static/../service.py"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert b"root:" not in response.content and b"SearchService" not in response.content


def test_openapi_documents_the_api_and_docs_work_offline(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/api/search", "/api/gallery", "/api/items/{item_id}/image",
            "/api/items/{item_id}/crop", "/healthz"} <= set(spec["paths"])
    form = spec["paths"]["/api/search"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in form
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    assert not re.search(r"(src|href)=['\"]https?://", docs.text), "/docs must load no CDN"
    for asset in re.findall(r"(?:src|href)=['\"](/[^'\"]+)['\"]", docs.text):
        assert client.get(asset).status_code == 200, asset


def test_page_is_served_whole_and_offline(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assets = re.findall(r"(?:src|href)=\"([^\"]+)\"", page.text)
    assert sorted(assets) == ["/static/app.js", "/static/style.css"]
    for text in [page.text] + [client.get(asset).text for asset in assets]:
        addresses = set(re.findall(r"https?://[^\s\"'`)]+", text)) - {SVG_NAMESPACE}
        assert not addresses, "the page must load nothing from elsewhere"
