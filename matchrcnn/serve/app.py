"""The FastAPI app: the JSON API, the page at ``/``, and the limits that keep it serving.

Every refusal is a 4xx (or a 503 when too many photos wait) with a JSON body ``{"detail": ...}``,
FastAPI's own error shape, and leaves the service as it was. Shop images are named by item id
only: no request names a path, and no answer reveals one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Annotated

import numpy as np
from fastapi import Depends, FastAPI, File, Form, HTTPException, Path, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from matchrcnn.data.categories import CATEGORY_NAMES
from matchrcnn.data.images import DEFAULT_MAX_PIXELS, ImageInputError
from matchrcnn.retrieval.query import QueryItem, results_document
from matchrcnn.serve import schemas
from matchrcnn.serve.access import TokenMiddleware
from matchrcnn.serve.crops import crop_jpeg
from matchrcnn.serve.outline import mask_outline
from matchrcnn.serve.service import SearchService, UnknownItemError
from matchrcnn.serve.upload import UploadError, UploadLimits, check_declared, decode_upload
from matchrcnn.utils.errors import UsageError

STATIC = FilePath(__file__).with_name("static")
MAX_TOPK = 100
MAX_ITEMS = 50
FORM_OVERHEAD = 64 * 1024
"""Bytes a request body may hold beyond the photo: multipart boundaries and the form fields."""
MAX_ITEM_ID = 2**63 - 1
ItemId = Annotated[int, Path(ge=1, le=MAX_ITEM_ID, description="a shop item's id (item_id)")]
CACHE = {"Cache-Control": "private, max-age=3600"}
"""Item images do not change while the gallery is served."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeSettings:
    """``max_upload_bytes`` and ``max_pixels``: the largest photo accepted; ``token``: the
    access token, or None; ``max_waiting``: photos accepted at once (decoding, waiting for or
    in the model) before more are refused with 503."""

    max_upload_bytes: int = 10 * 2**20
    max_pixels: int = DEFAULT_MAX_PIXELS
    token: str | None = None
    max_waiting: int = 16

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "max_waiting"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"{name} must be a positive integer, got {value!r}")


class _Admission:
    """At most ``limit`` photos in the service at once; counted on the event loop's thread."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        if self.active >= self.limit:
            raise HTTPException(503, f"busy: {self.active} photos are being searched; try again "
                                     f"shortly", headers={"Retry-After": "1"})
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1


class _DeclaredSizeLimit:
    """A request whose Content-Length is over ``limit`` is refused before its body is read.
    FastAPI's own limit on the search route (``max_body_size``) counts the bytes as they
    arrive, which catches a body sent without a length, but answers a declared length over it
    in plain text, not JSON."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = Headers(scope=scope).get("content-length", "") if scope["type"] == "http" else ""
        if declared.isdigit() and int(declared) > self.limit:
            response = JSONResponse(
                {"detail": f"request body of {int(declared):,} bytes, more than the limit of "
                           f"{self.limit:,} (--max-upload-mb, and {FORM_OVERHEAD:,} bytes for "
                           f"the form)"}, status_code=413)
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)


def _require_multipart(request: Request) -> None:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "multipart/form-data":
        raise HTTPException(415, f"send the photo as multipart/form-data (field 'image'), not as "
                                 f"{content_type or 'a body without a content type'}")


def search_document(name: str, size: tuple[int, int], scale: float, service: SearchService,
                    items: list[QueryItem], topk: int, same_category: bool, min_score: float,
                    max_items: int) -> dict:
    """results.json of the query tool for an upload of ``size`` (height, width), with item ids
    and image links for paths, and each garment's mask outline (masks ``scale`` times smaller
    than the photo) in the photo's pixels."""
    document = results_document(name, service.gallery, items, topk, same_category, min_score,
                                max_items)
    del document["gallery"]
    document["height"], document["width"] = size
    for item, garment in zip(items, document["items"], strict=True):
        garment["outline"] = [[[x * scale, y * scale] for x, y in polygon]
                              for polygon in mask_outline(item.mask)]
        for hit, retrieved in zip(item.hits, garment["retrieved"], strict=True):
            del retrieved["image_path"]
            retrieved["item_id"] = hit.row
            retrieved["image_url"] = f"/api/items/{hit.row}/image"
            retrieved["crop_url"] = f"/api/items/{hit.row}/crop"
    return document


def create_app(service: SearchService, settings: ServeSettings) -> FastAPI:
    """The app over a loaded ``service``; the caller closes the service."""
    limits = UploadLimits(settings.max_upload_bytes, settings.max_pixels)
    admission = _Admission(settings.max_waiting)
    app = FastAPIOffline(
        title="matchrcnn visual search",
        description="Find the garments of a photo among a shop gallery's items (Match R-CNN). "
                    "With an access token, every path but /healthz needs "
                    "`Authorization: Bearer TOKEN`.",
        version="0.1.0")
    max_body = limits.max_bytes + FORM_OVERHEAD
    app.add_middleware(_DeclaredSizeLimit, limit=max_body)
    if settings.token is not None:  # added last: runs first
        app.add_middleware(TokenMiddleware, token=settings.token)

    def prepare(name: str, data: bytes) -> tuple[tuple[int, int], np.ndarray, float]:
        """The upload's size and working copy; the full-size pixels are let go here."""
        photo = decode_upload(name, data, limits)
        return photo.shape[:2], *service.working_copy(photo)

    @app.exception_handler(UploadError)
    async def refuse_upload(request: Request, error: UploadError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=error.status)

    @app.exception_handler(UnknownItemError)
    async def unknown_item(request: Request, error: UnknownItemError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=404)

    @app.get("/healthz", response_model=schemas.Health, tags=["service"])
    async def healthz() -> dict:
        """Whether the service is up (needs no token)."""
        return {"status": "ok"}

    @app.get("/api/gallery", response_model=schemas.GalleryInfo, tags=["gallery"])
    async def gallery_info() -> dict:
        """The served gallery, the model that built it, and the service's limits."""
        info = service.info
        return {"items": info.items, "images": info.images, "index": info.index,
                "embedding_size": info.embedding_size,
                "model_fingerprint": info.model_fingerprint,
                "categories": [{"id": number, "name": name}
                               for number, name in enumerate(CATEGORY_NAMES, start=1)],
                "max_topk": MAX_TOPK, "max_upload_bytes": limits.max_bytes,
                "max_pixels": limits.max_pixels}

    @app.post("/api/search", response_model=schemas.SearchResult, tags=["search"],
              dependencies=[Depends(_require_multipart)], max_body_size=max_body,
              responses={413: {"description": "photo over the byte or pixel limit"},
                         415: {"description": "not multipart, or not an image"},
                         422: {"description": "truncated or corrupt photo, bad parameter"},
                         503: {"description": "too many photos waiting; retry"}})
    async def search(
            image: Annotated[UploadFile, File(description="the photo (JPEG, PNG, ...)")],
            topk: Annotated[int, Form(ge=1, le=MAX_TOPK,
                                      description="shop items per garment")] = 20,
            same_category: Annotated[bool, Form(
                description="only shop items of the garment's own category")] = False,
            min_score: Annotated[float, Form(ge=0, le=1, description="search the garments "
                                             "detected with at least this score")] = 0.5,
            max_items: Annotated[int, Form(ge=1, le=MAX_ITEMS, description="search at most "
                                           "this many garments, the best-scoring")] = 10,
    ) -> dict:
        """The garments detected in the photo, best first, each with its top-k shop items in
        the match network's order (results.json of tools/query_gallery.py)."""
        name = image.filename or "upload"
        check_declared(name, image.content_type, image.size, limits)
        with admission.slot():
            data = await image.read()
            size, copy, scale = await run_in_threadpool(prepare, name, data)
            items = await service.search(copy, scale, topk, same_category, min_score, max_items)
            return await run_in_threadpool(search_document, name, size, scale, service, items,
                                           topk, same_category, min_score, max_items)

    @app.get("/api/items/{item_id}/image", tags=["gallery"], response_class=FileResponse,
             responses={200: {"content": {"image/*": {}}},
                        404: {"description": "no such item, or its image is gone"}})
    async def item_image(item_id: ItemId) -> FileResponse:
        """The shop image that holds the item, as stored."""
        item = await service.item(item_id)
        path = FilePath(item.image_path)
        if not path.is_file():
            logger.warning("item %d: its shop image %s is missing", item_id, path)
            raise HTTPException(404, f"item {item_id}: its shop image is missing on the server")
        return FileResponse(path, headers=CACHE)

    @app.get("/api/items/{item_id}/crop", tags=["gallery"], response_class=Response,
             responses={200: {"content": {"image/jpeg": {}}},
                        404: {"description": "no such item, or its image is gone"}})
    async def item_crop(item_id: ItemId) -> Response:
        """The item's box cut from its shop image, as JPEG (at most 320 px a side)."""
        item = await service.item(item_id)
        try:
            data = await run_in_threadpool(crop_jpeg, item, limits.max_pixels)
        except ImageInputError as error:
            logger.warning("item %d: %s", item_id, error)
            raise HTTPException(404, f"item {item_id}: its shop image cannot be read on the "
                                     f"server") from None
        return Response(data, media_type="image/jpeg", headers=CACHE)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
