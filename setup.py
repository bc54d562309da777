"""liftcam: LIFT-CAM and the CAM family on ONNX Runtime.

One import namespace, ``liftcam``, over the top-level folders:
``liftcam`` (the public API), ``engine/`` (run time: onnxruntime + numpy + Pillow),
``export/`` (build time: torch + onnx) and ``kernels/`` (CUDA source and launcher).
"""
from setuptools import setup

VERSION = "0.2.0"

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
        "liftcam.integrations",
        "liftcam.engine",
        "liftcam.export",
        "liftcam.export.demo",
        "liftcam.export.lift",
        "liftcam.kernels",
    ],
    package_dir={
        "liftcam": "liftcam",
        "liftcam.engine": "engine",
        "liftcam.export": "export",
        "liftcam.export.demo": "export/demo",
        "liftcam.export.lift": "export/lift",
        "liftcam.kernels": "kernels",
    },
    package_data={
        "liftcam.engine": ["demo/*.png", "demo/*.json", "demo/*.liftcam/*"],
        "liftcam.kernels": ["*.cu"],
        "liftcam.export.demo": ["weights/*"],
    },
    install_requires=["numpy>=1.23", "onnxruntime>=1.16", "Pillow>=9"],
    extras_require={
        # torch is pinned to the releases this project is tested with; pip takes
        # them from the local disk on the project machines (never a multi-GB download).
        "export": ["torch==2.14.1", "torchvision==0.29.1", "onnx>=1.15"],
        "gpu": ["onnxruntime-gpu>=1.16", "cuda-core>=0.3", "cuda-bindings>=12.6,<14"],
        "pycuda": ["pycuda"],
        # liftcam.integrations (imported only when called); the tests use both
        "ray": ["ray[data]>=2.9", "pyarrow"],
        "triton": ["tritonclient[grpc]>=2.40", "onnx>=1.15"],
        "test": ["pytest>=7", "hypothesis>=6", "captum>=0.7", "opencv-python-headless>=4.8",
                 "grad-cam>=1.5", "ruff>=0.6"],
        "bench": ["grad-cam>=1.5", "captum>=0.7", "matplotlib>=3.6"],
    },
    entry_points={"console_scripts": ["liftcam=liftcam.cli:main"]},
)
