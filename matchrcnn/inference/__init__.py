"""Inference for users: the model over their photos, folders and videos, and over a whole split
for the official submission files.

- ``defaults``: the settings the user-facing tools start from (one detection per garment).
- ``inputs``: what ``--input`` names (files, folders, globs) and where each picture goes.
- ``video``: reading a video's frames and writing an MP4, whole or not at all.
- ``streams``: several official results files written side by side from one pass.
- ``demo``: tools/demo.py's work: predictions drawn to PNG / MP4, optionally as results files.
- ``submission``: tools/write_submission.py's work: the four official files for a split.
"""
