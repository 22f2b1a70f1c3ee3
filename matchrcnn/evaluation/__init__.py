"""DeepFashion2's official evaluation: exact numbers, fast enough for every checkpoint.

- ``coco``: box, mask and landmark AP (both landmark settings) and attribute breakdowns, from
  in-memory predictions or official result files, with faster-coco-eval or pycocotools.
- ``retrieval``: the consumer-to-shop retrieval protocol (top-1/5/10/15/20), vectorised.
- ``results``: writers of the four official result formats and validating readers.
- ``box_iou``, ``entries``, ``synthetic``: pycocotools' box IoU in numpy, validation of JSON entry
  lists, seeded inputs for tests and benchmarks.

``coco`` imports pycocotools and faster-coco-eval; the other modules need only numpy.
"""
