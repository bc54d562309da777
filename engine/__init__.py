"""Run time: ONNX Runtime sessions over a bundle, the CAM methods and their shared tail.

Imports only numpy, onnxruntime and (for images) Pillow.
"""
