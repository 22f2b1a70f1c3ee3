"""matchrcnn: Match R-CNN for DeepFashion2-style clothing detection, landmarks and retrieval."""

from pathlib import Path

from setuptools import Extension, find_packages, setup

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
    package_data={"matchrcnn.data": ["*.json"]},
    # The fast JSON scanner of matchrcnn.evaluation.fast_json. Optional: without a C compiler the
    # install still succeeds and every file is read by the strict reader (the same arrays, slower).
    ext_modules=[Extension("matchrcnn.evaluation._json_scan", ["matchrcnn/evaluation/_json_scan.c"],
                           optional=True)],
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "numpy>=1.24",
        "pillow>=9.0",
        "opencv-python-headless>=4.8",
        "pycocotools>=2.0.7",
        "faster-coco-eval>=1.6",
        "faiss-cpu>=1.8",
        "pyyaml>=6.0",
        "fvcore>=0.1.5",
        "tqdm>=4.66",
        "tensorboard>=2.14",
    ],
    extras_require={
        "test": ["pytest>=8.0", "ruff>=0.6"],
        # detectron2 is on no package index; it compiles against the installed torch, so install
        # with --no-build-isolation after the base install (README.md, "Use with detectron2").
        "d2": ["detectron2 @ git+https://github.com/facebookresearch/detectron2.git"],
    },
)
