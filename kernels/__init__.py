"""CUDA kernels for the LIFT-CAM tail and their launcher (lazy imports: no GPU needed to import)."""

_LAZY = ("get_launcher", "tail_ortvalues", "tail_numpy", "compile_source",
         "KernelUnavailableError", "KernelLaunchError", "gpu_available")


def __getattr__(name):  # lazy: importing liftcam.kernels never touches CUDA
    if name in _LAZY:
        from liftcam.kernels import launcher
        return getattr(launcher, name)
    raise AttributeError(f"module 'liftcam.kernels' has no attribute {name!r}")
