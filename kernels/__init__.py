"""CUDA kernels for the LIFT-CAM tail and their launcher (lazy imports: no GPU needed to import)."""
