"""Build time: split a CNN into features/head ONNX graphs and generate the multiplier graphs.

Needs torch (for PyTorch models) and onnx; both are imported lazily inside the functions.
"""
