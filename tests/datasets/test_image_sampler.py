"""Random image batches for datasets without pairs: distinct images, reproducible per iteration."""

from __future__ import annotations

from itertools import islice

import pytest

from matchrcnn.data.samplers import ImageBatchSampler, has_pairs


def test_batches_are_distinct_images_and_a_function_of_seed_rank_and_iteration():
    sampler = ImageBatchSampler(10, 4, seed=3, rank=1)
    batches = list(islice(sampler.iterate(), 30))
    assert all(len(set(batch)) == 4 and all(0 <= i < 10 for i in batch) for batch in batches)
    assert {i for batch in batches for i in batch} == set(range(10))
    assert list(islice(ImageBatchSampler(10, 4, seed=3, rank=1).iterate(7), 5)) == batches[7:12]
    for other in (ImageBatchSampler(10, 4, seed=4, rank=1), ImageBatchSampler(10, 4, seed=3)):
        assert [other.batch(i) for i in range(30)] != batches


def test_too_few_images_are_refused():
    with pytest.raises(ValueError, match="3 images cannot fill batches of 4 images"):
        ImageBatchSampler(3, 4)


def test_pairs_are_recognised_only_when_every_record_has_them():
    paired = [{"source": "user", "pair_id": 1}, {"source": "shop", "pair_id": 1}]
    assert has_pairs(paired)
    assert not has_pairs([*paired, {"file_name": "a.jpg"}])
    assert not has_pairs([])
