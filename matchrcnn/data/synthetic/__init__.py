"""A synthetic DeepFashion2: same layout and annotation schema, generated from a seed.

The real images come under a licence form, so the project tests and demonstrates itself on this
stand-in. ``generate_dataset`` writes it (generate.py plans the pair groups and splits and writes
the files); render.py draws one image and annotates it from what was drawn, with the garment
outlines of templates.py, the looks of appearance.py and the polygon arithmetic of geometry.py.
"""

from matchrcnn.data.synthetic.generate import SPLITS, generate_dataset, plan_dataset

__all__ = ["SPLITS", "generate_dataset", "plan_dataset"]
