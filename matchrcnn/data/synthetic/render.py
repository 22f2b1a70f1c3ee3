"""Drawing one synthetic DeepFashion2 image and annotating it from what was actually drawn.

An image is a stack of layers, bottom to top: garments (a template's silhouette under a pose, its
seams drawn on the fabric) and, in user photos, occluders. The stack is decided first; an owner
map (which layer shows at each pixel) then gives both the pixels and the labels, so a landmark is
occluded (v=1) exactly when a later layer covers its pixel, and the attributes follow the
dataset's definitions (scale from the area of the written, clipped polygon). Items are numbered
in drawing order, item1 at the bottom.

Image sizes: ``size`` is the longer side. User photos are landscape (size x 3/4 size), portrait
or square; shop photos are square.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from matchrcnn.data.categories import category_name
from matchrcnn.data.synthetic.appearance import (
    Appearance,
    distractor_appearance,
    garment_appearance,
    random_color,
    render_texture,
    texture_to_template,
)
from matchrcnn.data.synthetic.geometry import (
    apply_homography,
    clip_polygon,
    drop_repeated_vertices,
    polygon_area,
    rotation,
    scaling,
    translation,
)
from matchrcnn.data.synthetic.templates import Template, template

SPLIT_CODES = {"train": 1, "validation": 2}
JPEG_QUALITY = 90

MIN_INSIDE_SHARE = 0.15
"""An item with less of its outline area inside the image is not drawn (the dataset's cut-off)."""
MIN_VISIBLE_SHARE = 0.35
"""Layers on top may hide at most this much less than all of an item's in-image pixels."""
PLACEMENT_ATTEMPTS = 20
SIDE_VIEW_ANGLE = 30.0
SIDE_VIEW_SQUASH = 0.7

_RENDER_STREAM = 201


@dataclass(frozen=True)
class ItemSpec:
    """What the plan puts in an image: a garment of a category, with its style in the pair."""

    category_id: int
    style: int


@dataclass(frozen=True)
class ImageSpec:
    """Everything the renderer needs besides the seed; the file is ``<split>/image/<index>.jpg``."""

    split: str
    index: int
    width: int
    height: int
    source: str
    pair_id: int
    items: tuple[ItemSpec, ...]


@dataclass(frozen=True)
class _Pose:
    scale: float
    squash: float
    angle: float
    tilt: tuple[float, float]
    center: tuple[float, float]

    @property
    def viewpoint(self) -> int:
        """2 frontal, or 3 side/back when the pose turns the garment away from the camera.

        Rotation beyond SIDE_VIEW_ANGLE degrees or a width squashed below SIDE_VIEW_SQUASH
        (foreshortening, as when the wearer turns) counts as side or back. Shop garments are
        laid flat, not worn: viewpoint 1.
        """
        side = abs(self.angle) > SIDE_VIEW_ANGLE or self.squash < SIDE_VIEW_SQUASH
        return 3 if side else 2


@dataclass(frozen=True)
class _Garment:
    spec: ItemSpec
    template: Template
    appearance: Appearance
    matrix: np.ndarray
    points: np.ndarray
    outline: np.ndarray
    clipped: np.ndarray
    viewpoint: int


@dataclass(frozen=True)
class _Layer:
    mask: np.ndarray
    garment: _Garment | None = None
    color: tuple[int, int, int] = (0, 0, 0)


def render_image(spec: ImageSpec, seed: int) -> tuple[np.ndarray, dict]:
    """The BGR image and its DeepFashion2 annotation (keys in a fixed order) for one plan entry."""
    rng = np.random.default_rng([seed, _RENDER_STREAM, SPLIT_CODES[spec.split], spec.index])
    shop = spec.source == "shop"
    image = _plain_background(rng, spec) if shop else _cluttered_background(rng, spec)
    layers: list[_Layer] = []
    for slot, item in enumerate(spec.items):
        if item.style > 0:
            appearance = garment_appearance(seed, spec.pair_id, item.style)
        else:
            appearance = distractor_appearance(seed, SPLIT_CODES[spec.split], spec.index, slot)
        if shop:
            pose = _shop_pose(rng, template(item.category_id), appearance, spec)
            layers.append(_garment_layer(_place(item, appearance, pose, spec, 1), spec))
        else:
            layers = _insert_garment(rng, layers, item, appearance, spec)
    if not shop:
        layers = _add_occluders(rng, layers, spec)
    owner = _owner_map(layers, spec)
    _paint(image, layers, owner, spec)
    sigma = 1.5 if shop else rng.uniform(2.0, 6.0)
    noise = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    image = np.clip(image + noise, 0, 255).astype(np.uint8)
    return image, _annotation(spec, layers, owner)


def encode_jpeg(image: np.ndarray) -> bytes:
    """JPEG bytes with fixed parameters, so equal images give equal files."""
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG image")
    return buffer.tobytes()


def _pose_matrix(tmpl: Template, appearance: Appearance, pose: _Pose) -> np.ndarray:
    """Template units to image pixels: centre, cut and size, rotate, tilt, then place."""
    x1, y1, x2, y2 = tmpl.bounds
    half_extent = pose.scale * max(x2 - x1, y2 - y1) / 2
    tilt = np.eye(3)
    tilt[2, :2] = np.asarray(pose.tilt) / half_extent
    size = scaling(pose.scale * pose.squash * appearance.cut[0], pose.scale * appearance.cut[1])
    return (translation(*pose.center) @ tilt @ rotation(pose.angle) @ size
            @ translation(-(x1 + x2) / 2, -(y1 + y2) / 2))


def _long_side(tmpl: Template, appearance: Appearance) -> float:
    x1, y1, x2, y2 = tmpl.bounds
    return max((x2 - x1) * appearance.cut[0], (y2 - y1) * appearance.cut[1])


def _user_pose(rng: np.random.Generator, tmpl: Template, appearance: Appearance,
               spec: ImageSpec, styled: bool) -> _Pose:
    share = rng.uniform(0.4, 1.05) if styled else rng.uniform(0.25, 0.8)
    if rng.random() < 0.7:
        angle = float(np.clip(rng.normal(0.0, 8.0), -25.0, 25.0))
    else:
        angle = float(rng.uniform(-75.0, 75.0))
    squash = rng.uniform(0.85, 1.0) if rng.random() < 0.75 else rng.uniform(0.5, 0.8)
    margin = 0.15 if styled else 0.0
    center = (rng.uniform(margin, 1 - margin) * spec.width,
              rng.uniform(margin, 1 - margin) * spec.height)
    scale = share * min(spec.width, spec.height) / _long_side(tmpl, appearance)
    tilt = rng.uniform(-0.2, 0.2, size=2)
    return _Pose(float(scale), float(squash), angle, (float(tilt[0]), float(tilt[1])), center)


def _shop_pose(rng: np.random.Generator, tmpl: Template, appearance: Appearance,
               spec: ImageSpec) -> _Pose:
    """Frontal and centred, filling most of the square frame."""
    share = rng.uniform(0.6, 0.85)
    scale = share * min(spec.width, spec.height) / _long_side(tmpl, appearance)
    return _Pose(float(scale), 1.0, 0.0, (0.0, 0.0), (spec.width / 2, spec.height / 2))


def _centred_pose(tmpl: Template, appearance: Appearance, spec: ImageSpec) -> _Pose:
    """Last resort for a garment the pair needs: upright in the middle of the image."""
    scale = 0.6 * min(spec.width, spec.height) / _long_side(tmpl, appearance)
    return _Pose(scale, 1.0, 0.0, (0.0, 0.0), (spec.width / 2, spec.height / 2))


def garment_geometry(category_id: int, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A garment drawn through ``matrix`` (3x3, template units to pixels): its landmarks, (N, 2)
    integer pixels in the category's order, and its silhouette polygon."""
    tmpl = template(category_id)
    points = np.rint(apply_homography(matrix, tmpl.points)).astype(np.int64)
    return points, points[list(tmpl.outline)]


def _place(item: ItemSpec, appearance: Appearance, pose: _Pose, spec: ImageSpec,
           viewpoint: int) -> _Garment:
    tmpl = template(item.category_id)
    matrix = _pose_matrix(tmpl, appearance, pose)
    points, outline = garment_geometry(item.category_id, matrix)
    clipped = clip_polygon(outline.astype(np.float64), spec.width - 1, spec.height - 1)
    return _Garment(item, tmpl, appearance, matrix, points, outline, clipped, viewpoint)


def _inside_share(garment: _Garment) -> float:
    full = polygon_area(garment.outline.astype(np.float64))
    return polygon_area(garment.clipped) / full if full > 0 else 0.0


def _garment_layer(garment: _Garment, spec: ImageSpec) -> _Layer:
    mask = np.zeros((spec.height, spec.width), dtype=np.uint8)
    cv2.fillPoly(mask, [garment.outline.astype(np.int32)], 1)
    return _Layer(mask.astype(bool), garment)


def _insert_garment(rng: np.random.Generator, layers: list[_Layer], item: ItemSpec,
                    appearance: Appearance, spec: ImageSpec) -> list[_Layer]:
    """Add a garment where it stays mostly in frame and hides no item too much.

    Paired garments go on top of the stack when placed; distractors may slide underneath. A
    paired garment that finds no such place takes the least harmful one tried, or the centre.
    """
    tmpl = template(item.category_id)
    styled = item.style > 0
    best: tuple[float, list[_Layer]] | None = None
    for _ in range(PLACEMENT_ATTEMPTS):
        pose = _user_pose(rng, tmpl, appearance, spec, styled)
        garment = _place(item, appearance, pose, spec, pose.viewpoint)
        if _inside_share(garment) < MIN_INSIDE_SHARE:
            continue
        position = len(layers) if styled else int(rng.integers(len(layers) + 1))
        candidate = [*layers[:position], _garment_layer(garment, spec), *layers[position:]]
        score = _least_visible_share(candidate, spec)
        if score >= MIN_VISIBLE_SHARE:
            return candidate
        if best is None or score > best[0]:
            best = (score, candidate)
    if not styled:
        return layers
    if best is not None:
        return best[1]
    pose = _centred_pose(tmpl, appearance, spec)
    return [*layers, _garment_layer(_place(item, appearance, pose, spec, 2), spec)]


def _add_occluders(rng: np.random.Generator, layers: list[_Layer],
                   spec: ImageSpec) -> list[_Layer]:
    """Put 0 to 2 blobs (a bag, a hand, an arm) over parts of garments."""
    garments = [layer.garment for layer in layers if layer.garment is not None]
    for _ in range(int(rng.choice(3, p=[0.4, 0.4, 0.2]))):
        if not garments:
            break
        garment = garments[int(rng.integers(len(garments)))]
        anchor = garment.points[int(rng.integers(len(garment.points)))]
        size = np.sqrt(max(polygon_area(garment.outline.astype(np.float64)), 1.0))
        mask = np.zeros((spec.height, spec.width), dtype=np.uint8)
        axes = (max(2, round(size * rng.uniform(0.1, 0.3))),
                max(2, round(size * rng.uniform(0.05, 0.2))))
        center = (int(anchor[0] + rng.normal(0, size * 0.1)),
                  int(anchor[1] + rng.normal(0, size * 0.1)))
        cv2.ellipse(mask, center, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        candidate = [*layers, _Layer(mask.astype(bool), color=random_color(rng, 0.15))]
        if _least_visible_share(candidate, spec) >= MIN_VISIBLE_SHARE:
            layers = candidate
    return layers


def _owner_map(layers: list[_Layer], spec: ImageSpec) -> np.ndarray:
    """For every pixel, 1 + the index of the top layer covering it (0: background)."""
    owner = np.zeros((spec.height, spec.width), dtype=np.uint8)
    for number, layer in enumerate(layers, start=1):
        owner[layer.mask] = number
    return owner


def _least_visible_share(layers: list[_Layer], spec: ImageSpec) -> float:
    owner = _owner_map(layers, spec)
    shares = [
        np.count_nonzero(owner == number) / max(np.count_nonzero(layer.mask), 1)
        for number, layer in enumerate(layers, start=1)
        if layer.garment is not None
    ]
    return min(shares, default=1.0)


def _paint(image: np.ndarray, layers: list[_Layer], owner: np.ndarray, spec: ImageSpec) -> None:
    """Fill each layer's visible pixels: garments with their fabric warped by their pose and
    their seams (the lines through the landmarks inside the silhouette) darker."""
    for number, layer in enumerate(layers, start=1):
        shown = owner == number
        if not shown.any():
            continue
        if layer.garment is None:
            image[shown] = layer.color
            continue
        x, y, w, h = cv2.boundingRect(shown.astype(np.uint8))
        garment = layer.garment
        texture = render_texture(garment.appearance, garment.template)
        matrix = translation(-x, -y) @ garment.matrix @ texture_to_template(garment.template)
        fabric = cv2.warpPerspective(texture, matrix, (w, h), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REPLICATE)
        window = shown[y:y + h, x:x + w]
        image[y:y + h, x:x + w][window] = fabric[window]
        _draw_seams(image, garment, shown)


SEAM_SHADE = 0.55
"""Seams darken the fabric to this share of its brightness."""


def _draw_seams(image: np.ndarray, garment: _Garment, shown: np.ndarray) -> None:
    if not garment.template.seams:
        return
    x1, y1 = garment.outline.min(axis=0)
    x2, y2 = garment.outline.max(axis=0)
    thickness = max(1, round(max(x2 - x1, y2 - y1) / 80))
    lines = np.zeros(shown.shape, dtype=np.uint8)
    cv2.polylines(lines, [garment.points[list(seam)].astype(np.int32)
                          for seam in garment.template.seams], False, 1, thickness)
    seam = (lines > 0) & shown
    image[seam] = (image[seam] * SEAM_SHADE).astype(np.uint8)


def _cluttered_background(rng: np.random.Generator, spec: ImageSpec) -> np.ndarray:
    """A busy scene: a base colour under random rectangles, discs, polygons and lines."""
    width, height = spec.width, spec.height
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = random_color(rng, 0.2)
    for _ in range(int(rng.integers(6, 16))):
        color = random_color(rng, 0.1)
        kind = int(rng.integers(4))
        x, y = int(rng.integers(width)), int(rng.integers(height))
        reach = int(rng.integers(8, max(9, min(width, height) // 3)))
        if kind == 0:
            cv2.rectangle(image, (x, y), (x + reach, y + int(rng.integers(4, reach + 5))),
                          color, -1)
        elif kind == 1:
            cv2.circle(image, (x, y), reach // 2, color, -1, cv2.LINE_AA)
        elif kind == 2:
            points = np.array([x, y]) + rng.integers(-reach, reach + 1, size=(int(
                rng.integers(3, 7)), 2))
            cv2.fillPoly(image, [points.astype(np.int32)], color, cv2.LINE_AA)
        else:
            end = (int(rng.integers(width)), int(rng.integers(height)))
            cv2.line(image, (x, y), end, color, int(rng.integers(1, 6)), cv2.LINE_AA)
    return image


def _plain_background(rng: np.random.Generator, spec: ImageSpec) -> np.ndarray:
    """A studio backdrop: one pale, nearly grey colour."""
    image = np.empty((spec.height, spec.width, 3), dtype=np.uint8)
    image[:] = tuple(int(c) for c in rng.integers(215, 251, size=3))
    return image


def _annotation(spec: ImageSpec, layers: list[_Layer], owner: np.ndarray) -> dict:
    annotation: dict = {"source": spec.source, "pair_id": spec.pair_id}
    count = 0
    for number, layer in enumerate(layers, start=1):
        if layer.garment is None:
            continue
        item = _item_annotation(layer.garment, number, owner, spec)
        if item is not None:
            count += 1
            annotation[f"item{count}"] = item
    return annotation


def _item_annotation(garment: _Garment, number: int, owner: np.ndarray,
                     spec: ImageSpec) -> dict | None:
    """One item's entry, or None when rounding left no area inside the image."""
    polygon = drop_repeated_vertices(np.rint(garment.clipped).astype(np.int64))
    area = polygon_area(polygon.astype(np.float64))
    if len(polygon) < 3 or area <= 0:
        return None
    x1, y1 = polygon.min(axis=0)
    x2, y2 = polygon.max(axis=0)
    xs, ys = garment.points[:, 0], garment.points[:, 1]
    inside = (xs >= 0) & (xs < spec.width) & (ys >= 0) & (ys < spec.height)
    visibility = np.zeros(len(xs), dtype=np.int64)
    visibility[inside] = np.where(owner[ys[inside], xs[inside]] > number, 1, 2)
    landmarks = np.where(inside[:, None], garment.points, 0)
    labelled = int(np.count_nonzero(visibility))
    occluded = int(np.count_nonzero(visibility == 1))
    return {
        "category_id": garment.spec.category_id,
        "category_name": category_name(garment.spec.category_id),
        "style": garment.spec.style,
        "bounding_box": [int(x1), int(y1), int(x2), int(y2)],
        "landmarks": np.column_stack([landmarks, visibility]).ravel().tolist(),
        "segmentation": [polygon.ravel().tolist()],
        "scale": scale_level(area / (spec.width * spec.height)),
        "occlusion": occlusion_level(occluded / labelled if labelled else 0.0),
        "zoom_in": zoom_in_level(float(np.count_nonzero(~inside)) / len(xs)),
        "viewpoint": garment.viewpoint,
    }


def scale_level(image_share: float) -> int:
    """1 small (< 10% of the image), 3 large (> 40%), else 2 moderate."""
    return 1 if image_share < 0.10 else 3 if image_share > 0.40 else 2


def occlusion_level(occluded_share: float) -> int:
    """Share of labelled landmarks that are occluded: 1 below 20%, 3 above 50%, else 2."""
    return 1 if occluded_share < 0.20 else 3 if occluded_share > 0.50 else 2


def zoom_in_level(outside_share: float) -> int:
    """Share of landmarks outside the image: 1 none, 2 up to 30%, 3 more."""
    return 1 if outside_share == 0 else 2 if outside_share <= 0.30 else 3
