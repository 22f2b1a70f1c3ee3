"""DeepFashion2's official evaluation: exact numbers, fast enough for every checkpoint.

- ``coco``: box, mask and landmark AP (both landmark settings) and attribute breakdowns, from
  in-memory predictions or official result files, with faster-coco-eval or pycocotools.
- ``retrieval``: the consumer-to-shop retrieval protocol (top-1/5/10/15/20), vectorised, scoring
  any file the official script scores as it scores it.
- ``results``: writers of the four official result formats and validating readers.
- ``entries``, ``json_columns``: validation of JSON entry lists, and their fast exact reader
  (pysimdjson).
- ``cli``: how the file-scoring tools report problems and warnings.
- ``box_iou``, ``synthetic``: pycocotools' box IoU in numpy, seeded inputs for tests and
  benchmarks.

The modules above import neither torch nor FAISS (``coco`` imports pycocotools and
faster-coco-eval when it runs; the others need only numpy and pysimdjson), so scoring files
costs no model stack. Import the modules themselves: this package imports none of them.
"""
