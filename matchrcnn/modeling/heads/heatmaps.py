"""Heatmaps to image points for every box at once, where torchvision's decoder puts them.

torchvision's ``heatmaps_to_keypoints`` resizes each box's S x S maps bicubically to the box's
size in pixels (width and height rounded up) and takes each map's argmax: a Python loop over the
boxes with two host syncs and a resize each, whose cost grows with the box's area. Pixel (j, i) of
that resized map is the map's bicubic interpolant (PyTorch's: a = -0.75, clamped border) at the
pixel's centre, so the argmax can be searched for without the resized map, in fixed-size tensors
for all boxes and maps together (no host sync), with ``grid_sample`` evaluating the interpolant
at exactly those centres:

1. candidates: the interpolant on an S x S grid per box. Along a side of at most S pixels the grid
   is every pixel (the search along that side is exhaustive); along a longer side it is the
   map's own S cells, where the interpolant is the map, but the side's end pixels in place of the
   end cells (the clamped border can lift the interpolant past the edge). The best point of
   each 2 x 2 cell of the grid, then the ``CANDIDATES`` best of those.
2. refinement: around each candidate, a window of (2R + 1)^2 pixels at a stride that spans the
   grid's spacing, then one at stride 1 around the best of the first.
3. the best candidate; equal values go to the first pixel in row-major order, as argmax does.

That finds torchvision's pixel whenever its maximum lies within reach of a candidate (on box sides
up to 36 S pixels: 2,016 for 56 x 56 maps); between near-equal peaks far apart it may choose
another than torchvision does. Measured against torchvision (docs/benchmarks.md): every landmark
within a pixel on smooth random maps of boxes of every shape, and all but 2 of 74,104 on the
quickstart model's heatmaps of 200 validation images; tests/modeling/test_heatmaps.py checks it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

CANDIDATES = 8
"""Peaks refined per map."""
RADIUS = 6
"""Refinement windows reach this many strides either side of their centre."""
CELL = 2
"""Candidates are the best points of CELL x CELL cells of the first grid, one per cell."""
CHUNK = 256
"""Boxes decoded together: bounds the working memory (about 0.5 MiB a box for 39 56 x 56 maps)."""


def decode_heatmaps(maps: Tensor, boxes: Tensor) -> Tensor:
    """Logits (N, K, S, S) of boxes (N, 4) XYXY -> the (N, K, 2) image points of their maxima.

    The points of torchvision's ``heatmaps_to_keypoints`` (its pixel centres, Heckbert's
    d + 0.5), found without a per-box loop; a box under a pixel wide counts as one pixel.
    """
    count, channels, _, _ = maps.shape
    if count == 0 or channels == 0:
        return maps.new_zeros(count, channels, 2, dtype=torch.float32)
    maps, boxes = maps.float(), boxes.float()
    return torch.cat([_decode(maps[start : start + CHUNK], boxes[start : start + CHUNK])
                      for start in range(0, count, CHUNK)])


def _decode(maps: Tensor, boxes: Tensor) -> Tensor:
    count, channels, size, _ = maps.shape
    widths = (boxes[:, 2] - boxes[:, 0]).clamp(min=1)
    heights = (boxes[:, 3] - boxes[:, 1]).clamp(min=1)
    pixels_x, pixels_y = widths.ceil(), heights.ceil()
    ys, xs = _candidates(maps, pixels_y, pixels_x)
    per_map = (count, 1, 1, 1)
    pixels_y, pixels_x = pixels_y.view(per_map), pixels_x.view(per_map)
    single = maps.reshape(count * channels, 1, size, size)
    stride_y, stride_x = _grid_spacing(pixels_y, size), _grid_spacing(pixels_x, size)
    _, ys, xs = _refine(single, ys, xs, stride_y, stride_x, pixels_y, pixels_x)
    ones = torch.ones_like(stride_y)
    values, ys, xs = _refine(single, ys, xs, ones, ones, pixels_y, pixels_x)
    ys, xs = _first_best(values, ys, xs, pixels_x.view(count, 1, 1))
    x = (xs + 0.5) * (widths / pixels_x.view(count))[:, None] + boxes[:, None, 0]
    y = (ys + 0.5) * (heights / pixels_y.view(count))[:, None] + boxes[:, None, 1]
    return torch.stack([x, y], dim=-1)


def _candidates(maps: Tensor, pixels_y: Tensor, pixels_x: Tensor) -> tuple[Tensor, Tensor]:
    """(N, K, T) pixel rows and columns of each map's CANDIDATES best first-grid points."""
    count, channels, size, _ = maps.shape
    grid_y, row_pixels = _first_grid(pixels_y, size)
    grid_x, column_pixels = _first_grid(pixels_x, size)
    values = _sample(maps, _product_grid(grid_y, grid_x)).flatten(2)
    steps = torch.arange(size, device=maps.device)
    outside = (steps >= pixels_y[:, None])[:, :, None] | (steps >= pixels_x[:, None])[:, None, :]
    values.masked_fill_(outside.view(count, 1, -1), -torch.inf)
    cells = F.max_pool2d(values.view(count, channels, size, size), CELL, ceil_mode=True)
    side = cells.shape[-1]
    best_cells = cells.flatten(2).topk(min(CANDIDATES, side * side), dim=2).indices
    offsets = torch.arange(CELL, device=maps.device)
    cell_rows = ((best_cells // side * CELL)[..., None] + offsets).clamp(max=size - 1)
    cell_columns = ((best_cells % side * CELL)[..., None] + offsets).clamp(max=size - 1)
    points = (cell_rows[..., :, None] * size + cell_columns[..., None, :]).flatten(3)
    inside = values[:, :, None].expand(-1, -1, points.shape[2], -1).gather(3, points)
    chosen = points.gather(3, inside.argmax(-1, keepdim=True))[..., 0]
    rows = row_pixels.gather(1, (chosen // size).flatten(1)).view(chosen.shape)
    columns = column_pixels.gather(1, (chosen % size).flatten(1)).view(chosen.shape)
    return rows, columns


def _first_grid(pixels: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Per box side (N,): S positions (normalised, as grid_sample takes them) and the pixel each
    stands for. A side of at most S pixels: every pixel (the last repeated; the caller masks the
    repeats). A longer one: the map's S cells, each for its nearest pixel, but the end pixels
    themselves in place of the end cells, as the clamped border can lift the interpolant there
    past the map's own edge values."""
    steps = torch.arange(size, device=pixels.device, dtype=torch.float32)
    pixels = pixels[:, None]
    every = torch.minimum(steps, pixels - 1)
    nearest = torch.minimum(((steps + 0.5) * pixels / size - 0.5).round().clamp(min=0), pixels - 1)
    nearest = torch.where(steps == size - 1, pixels - 1, torch.where(steps == 0, 0.0, nearest))
    ends = (steps == 0) | (steps == size - 1)
    cells = torch.where(ends, _centre(nearest, pixels), _centre(steps, size))
    short = pixels <= size
    return torch.where(short, _centre(every, pixels), cells), torch.where(short, every, nearest)


def _grid_spacing(pixels: Tensor, size: int) -> Tensor:
    """The first stride of a refinement: its window spans the first grid's spacing in pixels."""
    return (pixels / size).ceil().div(RADIUS).ceil()


def _refine(maps: Tensor, ys: Tensor, xs: Tensor, stride_y: Tensor, stride_x: Tensor,
            pixels_y: Tensor, pixels_x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The best pixel (value, row, column; each (N, K, T)) of a window around each centre."""
    count, channels, tries = ys.shape
    offsets = torch.arange(-RADIUS, RADIUS + 1, device=maps.device, dtype=torch.float32)
    side = len(offsets)
    rows = torch.minimum((ys[..., None] + offsets * stride_y).clamp(min=0), pixels_y - 1)
    columns = torch.minimum((xs[..., None] + offsets * stride_x).clamp(min=0), pixels_x - 1)
    grid = _product_grid(_centre(rows, pixels_y), _centre(columns, pixels_x))
    values = _sample(maps, grid.view(count * channels, tries * side, side, 2))
    values = values.view(count, channels, tries, side * side)
    best = values.argmax(-1, keepdim=True)
    return (values.gather(3, best)[..., 0], rows.gather(3, best // side)[..., 0],
            columns.gather(3, best % side)[..., 0])


def _first_best(values: Tensor, ys: Tensor, xs: Tensor, pixels_x: Tensor) -> tuple[Tensor, Tensor]:
    """(N, K) row and column of the best of the T candidates, ties to the first in row order."""
    order = ys * pixels_x + xs
    best = values == values.amax(-1, keepdim=True)
    pick = torch.where(best, order, torch.inf).argmin(-1, keepdim=True)
    return ys.gather(2, pick)[..., 0], xs.gather(2, pick)[..., 0]


def _centre(pixel: Tensor, pixels: Tensor | int) -> Tensor:
    """A pixel's centre on a side of ``pixels`` pixels, in grid_sample's [-1, 1] coordinates."""
    return (2 * pixel + 1) / pixels - 1


def _product_grid(rows: Tensor, columns: Tensor) -> Tensor:
    """(..., R) row and (..., C) column positions -> the (..., R, C, 2) grid of (x, y) points."""
    grid = rows.new_empty(*rows.shape, columns.shape[-1], 2)
    grid[..., 0] = columns[..., None, :]
    grid[..., 1] = rows[..., :, None]
    return grid


def _sample(maps: Tensor, grid: Tensor) -> Tensor:
    """The maps' bicubic interpolant (PyTorch's resize: a = -0.75, clamped border) at ``grid``."""
    return F.grid_sample(maps, grid, mode="bicubic", padding_mode="border", align_corners=False)
