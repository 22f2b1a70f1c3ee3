"""Every kind of bad request gets a 4xx with a JSON error saying what is wrong, and the service
goes on answering good requests as before."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient
from PIL import Image

from matchrcnn.serve.app import FORM_OVERHEAD, _Admission
from matchrcnn.serve.service import SearchService
from tests.serve.conftest import jpeg_bytes, make_client, search


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height RGB pixels, followed by a few bytes of data:
    a decompression bomb's shape. Decoding it would fail as truncated, so a refusal that names
    the pixel count was made from the header alone."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def noise_jpeg(side: int) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def assert_refused(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    text = detail if isinstance(detail, str) else " ".join(str(entry) for entry in detail)
    for word in words:
        assert word in text, (word, text)


@pytest.fixture
def still_serving(client: TestClient, user_photo: Path) -> Iterator[None]:
    """After the test's bad requests, a good search answers exactly as before them."""
    before = search(client, user_photo, min_score=0.0, max_items=2, topk=3).json()
    yield
    after = search(client, user_photo, min_score=0.0, max_items=2, topk=3)
    assert after.status_code == 200
    assert after.json() == before
    assert client.get("/healthz").status_code == 200


def test_not_an_image(client: TestClient, still_serving: None) -> None:
    assert_refused(search(client, b"these are words, not pixels", name="notes.jpg"), 415,
                   "notes.jpg", "not an image file")


def test_truncated_image(client: TestClient, user_photo: Path, still_serving: None) -> None:
    data = user_photo.read_bytes()
    assert_refused(search(client, data[:len(data) // 2], name="cut.jpg"), 422, "cut.jpg",
                   "truncated or corrupt")


def test_empty_upload(client: TestClient, still_serving: None) -> None:
    assert_refused(search(client, b"", name="empty.jpg"), 422, "empty.jpg", "empty upload")


def test_decompression_bomb_refused_from_its_header(client: TestClient,
                                                    still_serving: None) -> None:
    bomb = png_claiming(10_000, 10_000)
    assert len(bomb) < 200
    assert_refused(search(client, bomb, name="bomb.png", content_type="image/png"), 413,
                   "bomb.png", "10000x10000 = 100,000,000 pixels", "limit of 64,000,000")
    huge = png_claiming(60_000, 60_000)  # beyond PIL's own bomb limit too
    assert_refused(search(client, huge, name="huge.png", content_type="image/png"), 413,
                   "huge.png", "pixels")


def test_over_the_pixel_limit(service: SearchService, user_photo: Path) -> None:
    with make_client(service, max_pixels=1000) as small:
        assert_refused(search(small, jpeg_bytes((64, 48)), name="a.jpg"), 413,
                       "64x48 = 3,072 pixels", "limit of 1,000")
        assert search(small, jpeg_bytes((40, 25)), min_score=0.0).status_code == 200


def test_over_the_byte_limit(service: SearchService) -> None:
    photo = noise_jpeg(100)
    limit = len(photo) - 1
    with make_client(service, max_upload_bytes=limit) as small:
        assert_refused(search(small, photo, name="big.jpg"), 413, "big.jpg",
                       f"{len(photo):,} bytes", f"limit of {limit:,}")
        # a body beyond the photo's limit and the form's allowance is cut off while it arrives
        bigger = noise_jpeg(400)
        assert len(bigger) > limit + FORM_OVERHEAD
        assert_refused(search(small, bigger), 413, "request body of", "bytes, more than the "
                       f"limit of {limit + FORM_OVERHEAD:,}")

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
            yield b"--x\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n"
            yield b"Content-Type: image/jpeg\r\n\r\n"
            for start in range(0, len(bigger), 8192):
                yield bigger[start:start + 8192]
            yield b"\r\n--x--\r\n"

        streamed = small.post("/api/search", content=chunks(),
                              headers={"content-type": "multipart/form-data; boundary=x"})
        assert_refused(streamed, 413, "Content Too Large")
        assert search(small, jpeg_bytes(), min_score=0.0).status_code == 200


def test_wrong_content_types(client: TestClient, user_photo: Path, still_serving: None) -> None:
    photo = user_photo.read_bytes()
    assert_refused(search(client, photo, name="p.jpg", content_type="text/plain"), 415,
                   "p.jpg", "sent as text/plain, not as an image")
    assert_refused(client.post("/api/search", json={"image": "p.jpg"}), 415,
                   "multipart/form-data", "application/json")
    assert_refused(client.post("/api/search", data={"topk": "3"}), 415,
                   "application/x-www-form-urlencoded")
    assert_refused(client.post("/api/search", content=photo,
                               headers={"content-type": "image/jpeg"}), 415, "image/jpeg")


def test_octet_stream_is_judged_by_its_bytes(client: TestClient, user_photo: Path) -> None:
    response = search(client, user_photo, content_type="application/octet-stream",
                      min_score=0.0)
    assert response.status_code == 200


def test_missing_photo_and_bad_parameters(client: TestClient, user_photo: Path,
                                          still_serving: None) -> None:
    no_photo = client.post("/api/search", files={"other": ("a.jpg", jpeg_bytes(), "image/jpeg")})
    assert_refused(no_photo, 422, "image", "Field required")
    for field, value in (("topk", 0), ("topk", 101), ("topk", "many"), ("min_score", 1.5),
                         ("min_score", -0.1), ("max_items", 0), ("same_category", "perhaps")):
        response = search(client, user_photo, **{field: value})
        assert_refused(response, 422, field)


def test_upright_photo(client: TestClient) -> None:
    """A phone photo's EXIF orientation is applied, as the query tool does: the answer's size
    is the upright one."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to view
    buffer = io.BytesIO()
    Image.new("RGB", (80, 50), (30, 90, 160)).save(buffer, format="JPEG", exif=exif)
    answer = search(client, buffer.getvalue(), min_score=0.0).json()
    assert (answer["width"], answer["height"]) == (50, 80)


def test_admission_refuses_beyond_its_limit() -> None:
    admission = _Admission(2)
    with admission.slot(), admission.slot():
        with pytest.raises(HTTPException) as refused, admission.slot():
            pass
        assert refused.value.status_code == 503
        assert refused.value.headers == {"Retry-After": "1"}
    assert admission.active == 0
    with admission.slot():
        assert admission.active == 1
