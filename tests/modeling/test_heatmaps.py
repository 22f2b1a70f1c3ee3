"""The vectorised heatmap decoder against torchvision's heatmaps_to_keypoints, on random maps and
boxes of every shape: tiny, small, thin, mixed and large, and none."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.roi_heads import heatmaps_to_keypoints

from matchrcnn.data.categories import NUM_LANDMARKS
from matchrcnn.modeling.heads import decode_heatmaps, heatmaps_to_landmarks, landmark_decoder
from matchrcnn.modeling.heads.landmark import MAX_LANDMARKS

SIZE = 56


def random_boxes(generator: torch.Generator, count: int, kind: str) -> torch.Tensor:
    """XYXY boxes at fractional positions; their widths and heights by ``kind``."""
    uniform = torch.rand(count, 2, generator=generator)
    sides = {
        "tiny": 0.2 + uniform * 10,
        "small": 5 + uniform * 50,
        "mixed": torch.exp(uniform * 6.5),  # 1 to 665 pixels
        "large": 300 + uniform * 600,
    }
    if kind == "thin":
        short, long = 0.3 + uniform[:, 0] * 4, 60 + uniform[:, 1] * 600
        tall = torch.rand(count, generator=generator) < 0.5
        sides["thin"] = torch.stack([torch.where(tall, short, long),
                                     torch.where(tall, long, short)], dim=1)
    corner = torch.rand(count, 2, generator=generator) * 300
    return torch.cat([corner, corner + sides[kind]], dim=1)


def smooth_maps(generator: torch.Generator, count: int, channels: int) -> torch.Tensor:
    """Logits like a landmark head's: two Gaussian bumps of random place, width and height,
    plus noise."""
    ys, xs = torch.meshgrid(torch.arange(float(SIZE)), torch.arange(float(SIZE)),
                            indexing="ij")
    maps = 0.3 * torch.randn(count, channels, SIZE, SIZE, generator=generator)
    for _ in range(2):
        centre = torch.rand(count, channels, 2, 1, 1, generator=generator) * SIZE
        width = 1 + torch.rand(count, channels, 1, 1, generator=generator) * 4
        height = 4 + torch.rand(count, channels, 1, 1, generator=generator) * 8
        distance = (ys - centre[:, :, 0]) ** 2 + (xs - centre[:, :, 1]) ** 2
        maps += height * torch.exp(-distance / (2 * width**2))
    return maps


def reference(maps: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    return heatmaps_to_keypoints(maps, boxes)[0][..., :2]


@pytest.mark.parametrize("kind", ["tiny", "small", "thin", "mixed", "large"])
def test_every_point_is_within_a_pixel_of_torchvision(kind: str) -> None:
    generator = torch.Generator().manual_seed(11)
    count = 12 if kind == "large" else 40
    maps, boxes = smooth_maps(generator, count, 6), random_boxes(generator, count, kind)
    ours, theirs = decode_heatmaps(maps, boxes), reference(maps, boxes)
    assert ours.shape == (count, 6, 2) and ours.dtype == torch.float32
    error = (ours - theirs).abs().amax(-1)
    assert error.max() <= 1.0 + 1e-4
    # mostly the very pixel: a pixel apart only where two pixels' values all but tie
    assert (error < 1e-3).float().mean() > 0.99


def test_boxes_within_the_map_size_find_the_exact_argmax_even_in_noise() -> None:
    generator = torch.Generator().manual_seed(2)
    maps = torch.randn(60, 8, SIZE, SIZE, generator=generator)
    boxes = random_boxes(generator, 60, "small")
    torch.testing.assert_close(decode_heatmaps(maps, boxes), reference(maps, boxes),
                               atol=1e-4, rtol=0)


def test_a_peak_lands_where_torchvision_puts_it_in_every_box_shape() -> None:
    boxes = torch.tensor([[10.0, 20.0, 66.0, 76.0], [3.0, 4.0, 3.0, 4.0], [0.0, 0.0, 0.4, 700.0],
                          [5.5, 6.25, 1205.5, 806.25], [100.0, 50.0, 101.7, 51.2]])
    maps = torch.zeros(len(boxes), 3, SIZE, SIZE)
    maps[:, 0, 7, 5] = 20.0  # a spike
    steps = torch.arange(float(SIZE))
    maps[:, 1] = -((steps[None, :] - 40.3) ** 2 + (steps[:, None] - 12.8) ** 2) / 30  # a dome
    # on the left edge, where the clamped border lifts the interpolant past the map
    maps[:, 2, :, 0] = 1.0 + torch.exp(-((steps - 30.0) ** 2) / 20)
    torch.testing.assert_close(decode_heatmaps(maps, boxes), reference(maps, boxes),
                               atol=1e-4, rtol=0)


def test_no_boxes_and_float16_maps() -> None:
    assert decode_heatmaps(torch.zeros(0, 5, SIZE, SIZE), torch.zeros(0, 4)).shape == (0, 5, 2)
    landmarks = heatmaps_to_landmarks(torch.zeros(0, MAX_LANDMARKS, SIZE, SIZE),
                                      torch.zeros(0, dtype=torch.int64), torch.zeros(0, 4))
    assert landmarks.shape == (0, NUM_LANDMARKS, 3)
    generator = torch.Generator().manual_seed(4)
    maps = smooth_maps(generator, 5, 4).half()
    boxes = random_boxes(generator, 5, "mixed")
    torch.testing.assert_close(decode_heatmaps(maps, boxes), decode_heatmaps(maps.float(), boxes))


def test_landmarks_decode_with_either_decoder_and_the_same_scores() -> None:
    generator = torch.Generator().manual_seed(7)
    categories = torch.tensor([1, 4, 9, 13, 13])
    packed = smooth_maps(generator, len(categories), MAX_LANDMARKS)
    boxes = random_boxes(generator, len(categories), "mixed")
    ours = heatmaps_to_landmarks(packed, categories, boxes)
    with landmark_decoder("torchvision"):
        theirs = heatmaps_to_landmarks(packed, categories, boxes)
    assert ours.shape == theirs.shape == (len(categories), NUM_LANDMARKS, 3)
    assert torch.equal(ours[..., 2], theirs[..., 2])
    assert (ours[..., :2] - theirs[..., :2]).abs().max() <= 1.0 + 1e-4
    torch.testing.assert_close(heatmaps_to_landmarks(packed, categories, boxes), ours)
    with pytest.raises(ValueError, match="unknown landmark decoder 'bilinear'"):
        landmark_decoder("bilinear").__enter__()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_decoding_on_cuda_needs_no_host_sync() -> None:
    generator = torch.Generator().manual_seed(5)
    maps, boxes = smooth_maps(generator, 30, 8), random_boxes(generator, 30, "mixed")
    expected = reference(maps, boxes)
    maps, boxes = maps.cuda(), boxes.cuda()
    torch.cuda.set_sync_debug_mode("error")
    try:
        points = decode_heatmaps(maps, boxes)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert (points.cpu() - expected).abs().max() <= 1.0 + 1e-4
