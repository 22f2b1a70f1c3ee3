"""The gallery and the model as a visual search service (tools/serve_gallery.py).

- ``service``: the loaded model and the read-only gallery, each on a thread of its own.
- ``upload``: an uploaded photo to pixels, or the HTTP error saying what is wrong with it.
- ``outline``, ``crops``: a garment's mask as polygons, a shop item's crop as JPEG.
- ``access``: the optional access token, and where the service may listen without one.
- ``schemas``: the JSON answers, as FastAPI documents them at /docs.
- ``app``: the FastAPI app: the API, the page (``static/``), the limits.
- ``loadtest``: a bounded load test of a running service on this machine.

Needs the ``serve`` extra: ``pip install -e '.[serve]'``.
"""
