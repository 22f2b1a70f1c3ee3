"""matchrcnn: Match R-CNN for DeepFashion2-style clothing detection, landmarks and retrieval."""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="matchrcnn",
    version="0.1.0",
    description=(
        "Match R-CNN: clothing detection, segmentation, 294 landmarks and consumer-to-shop "
        "retrieval, trained end to end, evaluated by the DeepFashion2 protocol"
    ),
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["matchrcnn", "matchrcnn.*"]),
    package_data={"matchrcnn.data": ["*.json"], "matchrcnn.serve": ["static/*"]},
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "numpy>=1.24",
        "pillow>=9.0",
        "opencv-python-headless>=4.8",
        "pycocotools>=2.0.7",
        "faster-coco-eval>=1.6",
        "faiss-cpu>=1.8",
        "pysimdjson>=7.0",  # evaluation files read fast and exactly (evaluation/json_columns.py)
        "ijson>=3.2",  # dataset records streamed from COCO files (data/records.py)
        "pyyaml>=6.0",
        "fvcore>=0.1.5",
        "tqdm>=4.66",
        "tensorboard>=2.14",
    ],
    extras_require={
        # tools/serve_gallery.py: the visual search service (FastAPI on uvicorn; /docs offline)
        "serve": ["fastapi>=0.165", "fastapi-offline>=1.7", "uvicorn>=0.30",
                  "python-multipart>=0.0.18", "httpx2>=2.16"],
        # playwright drives the system's Chromium in the browser test (no browser download)
        # tests/d2 run against ../shared/vendor's detectron2 source where detectron2 is not
        # installed; these are its pure-python needs beyond ours
        "test": ["pytest>=8.0", "ruff>=0.6", "fastapi>=0.165", "fastapi-offline>=1.7",
                 "uvicorn>=0.30", "python-multipart>=0.0.18", "httpx2>=2.16", "playwright>=1.40",
                 "matplotlib", "cloudpickle", "omegaconf>=2.1,<2.4", "hydra-core>=1.1", "black"],
        # detectron2 is on no package index; it compiles against the installed torch, so install
        # with --no-build-isolation after the base install (README.md, "Use with detectron2").
        "d2": ["detectron2 @ git+https://github.com/facebookresearch/detectron2.git"],
    },
)
