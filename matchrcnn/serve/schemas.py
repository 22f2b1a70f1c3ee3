"""The JSON the service answers with, as pydantic models: FastAPI documents them at /docs and
checks every answer against them. The search answer is results.json of tools/query_gallery.py
with item ids and image links in place of server file paths."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Retrieved(BaseModel):
    rank: int = Field(description="1 for the best match")
    item_id: int = Field(description="the shop item's id in the gallery (/api/items/{item_id})")
    image_id: int | None = Field(description="the shop image's id, where the gallery knows it")
    box: list[float] = Field(description="the item's box in its shop image, [x1, y1, x2, y2]")
    category_id: int
    category: str
    detection_score: float
    match_score: float = Field(description="the match network's probability of the same item")
    match_logit: float = Field(description="same minus different logit: the ranking order")
    pair_id: int | None
    style: int | None
    image_url: str
    crop_url: str


class Garment(BaseModel):
    box: list[float] = Field(description="[x1, y1, x2, y2] in pixels of the upright photo")
    category_id: int
    category: str
    score: float
    outline: list[list[list[float]]] = Field(
        description="the mask's outer boundaries, each a polygon of [x, y] points")
    retrieved: list[Retrieved]


class SearchResult(BaseModel):
    image: str = Field(description="the uploaded file's name")
    width: int = Field(description="width of the upright photo")
    height: int
    model_fingerprint: str
    topk: int
    same_category: bool
    min_score: float
    max_items: int
    items: list[Garment] = Field(description="the detected garments, best score first")


class Category(BaseModel):
    id: int
    name: str


class GalleryInfo(BaseModel):
    items: int
    images: int
    index: dict = Field(description="the FAISS index: kind, dimension and shape parameters")
    embedding_size: int
    model_fingerprint: str
    categories: list[Category]
    max_topk: int
    max_upload_bytes: int
    max_pixels: int


class Health(BaseModel):
    status: str
