"""liftcam: LIFT-CAM and the CAM family on ONNX Runtime.

One import namespace, ``liftcam``, over the top-level folders:
``liftcam`` (the public API), ``engine/`` (run time: onnxruntime + numpy + Pillow),
``export/`` (build time: torch + onnx) and ``kernels/`` (CUDA source and launcher).
"""
from setuptools import setup

VERSION = "0.2.1"
SERVE = ["starlette>=0.37", "uvicorn>=0.29", "python-multipart>=0.0.9"]

setup(
    name="liftcam",
    version=VERSION,
    description="LIFT-CAM and gradient CAMs as ONNX graphs, explained with ONNX Runtime",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=[
        "liftcam",
        "liftcam.cli",
        "liftcam.metrics",
        "liftcam.serve",
        "liftcam.integrations",
        "liftcam.engine",
        "liftcam.export",
        "liftcam.export.demo",
        "liftcam.export.lift",
        "liftcam.export.edge",
        "liftcam.kernels",
    ],
    package_dir={
        "liftcam": "liftcam",
        "liftcam.engine": "engine",
        "liftcam.export": "export",
        "liftcam.export.demo": "export/demo",
        "liftcam.export.lift": "export/lift",
        "liftcam.export.edge": "export/edge",
        "liftcam.kernels": "kernels",
    },
    package_data={
        "liftcam.engine": ["demo/*.png", "demo/*.json", "demo/*.liftcam/*"],
        "liftcam.kernels": ["*.cu"],
        "liftcam.serve": ["page.html"],
        "liftcam.export.demo": ["weights/*"],
        "liftcam.export.edge": ["page/*"],
    },
    # onnxruntime >= 1.24: the first release that refuses external data outside the model's
    # folder (absolute, "..", symlinks) on its own; 1.23.2 reads it (DESIGN.md §11). liftcam's
    # load_bundle refuses it first either way.
    install_requires=["numpy>=1.23", "onnxruntime>=1.24.1", "Pillow>=9"],
    extras_require={
        # torch is pinned to the releases this project is tested with; pip takes
        # them from the local disk on the project machines (never a multi-GB download).
        "export": ["torch==2.14.1", "torchvision==0.29.1", "onnx>=1.15",
                   # torch.onnx.export(dynamo=True), the fallback for what TorchScript refuses
                   "onnxscript>=0.2"],
        "gpu": ["onnxruntime-gpu>=1.24.1", "cuda-core>=0.3", "cuda-bindings>=12.6,<14"],
        "pycuda": ["pycuda"],
        # the HTTP server (liftcam serve); the runtime never imports it
        "serve": SERVE,
        # the server tests use httpx and drive Debian's chromium with playwright (no
        # `playwright install`: .ci/run installs the browser with apt-get)
        # liftcam.integrations (imported only when called); the tests use both
        "ray": ["ray[data]>=2.9", "pyarrow"],
        "triton": ["tritonclient[grpc]>=2.40", "onnx>=1.15"],
        "test": ["pytest>=7", "hypothesis>=6", "captum>=0.7", "opencv-python-headless>=4.8",
                 "grad-cam>=1.5", "ruff>=0.6", "httpx>=0.27", "playwright>=1.40", *SERVE,
                 # tests/test_hf.py: random-weight transformers CNNs (torch stays 2.14.1)
                 "transformers>=4.40"],
        "bench": ["grad-cam>=1.5", "captum>=0.7", "matplotlib>=3.6"],
    },
    entry_points={"console_scripts": ["liftcam=liftcam.cli:main"]},
)
