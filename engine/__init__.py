"""Run time: ONNX Runtime sessions over a bundle, the CAM methods and their shared tail, images.

Imports only numpy, onnxruntime and (for images) Pillow. ``DEMO_DIR`` holds the built-in demo
assets (two bundles and sample images) that ``liftcam demo`` explains.
"""
from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent / "demo"
