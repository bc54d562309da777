"""CUDA kernels for the LIFT-CAM tail (``liftcam.cu``) and their launcher.

Modules: ``compiler`` (NVRTC compilation of liftcam.cu, the kernel errors), ``plan`` (argument
checks and the launch plan), ``backends`` (cuda-python / pycuda, :func:`gpu_available`),
``launch`` (:func:`get_launcher`, :func:`tail_ortvalues`, :func:`tail_numpy`).

Importing this package never touches CUDA: the names below load their module on first use.
"""

_LAZY = {
    "gpu_available": "backends",
    "get_launcher": "launch",
    "tail_ortvalues": "launch",
    "tail_numpy": "launch",
    "compile_source": "compiler",
    "KernelUnavailableError": "compiler",
    "KernelLaunchError": "compiler",
}

__all__ = sorted(_LAZY)


def __getattr__(name):  # lazy: importing liftcam.kernels never touches CUDA
    if name in _LAZY:
        from importlib import import_module
        return getattr(import_module(f"liftcam.kernels.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'liftcam.kernels' has no attribute {name!r}")
