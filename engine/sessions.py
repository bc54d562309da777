"""ONNX Runtime sessions over a bundle's graphs: providers, threads, lazy creation.

Sessions are created only for the graphs a call uses. Providers are validated up front: asking
for an execution provider this onnxruntime build does not have is an error, never a silent
fall-back to the CPU.
"""
from __future__ import annotations

import onnxruntime as ort

from liftcam.engine.errors import InputError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
ALIASES = {"cpu": CPU, "cuda": CUDA, "gpu": CUDA, "tensorrt": TENSORRT, "trt": TENSORRT}


def resolve_providers(providers) -> list:
    """Normalise ``providers`` (None, names, aliases like "cuda", or (name, options) pairs).

    The CPU provider is appended as the last resort for ops a device provider lacks, as
    ONNX Runtime recommends.
    """
    if providers is None:
        return [CPU]
    if isinstance(providers, (str, tuple)):
        providers = [providers]
    available = ort.get_available_providers()
    out = []
    for p in providers:
        name, opts = (p if isinstance(p, tuple) else (p, None))
        if not isinstance(name, str):
            raise InputError(f"providers: expected names like 'cuda' or "
                             f"'CUDAExecutionProvider', got {p!r}")
        name = ALIASES.get(name.lower(), name)
        if name not in available:
            raise InputError(
                f"execution provider {name} is not available in this onnxruntime "
                f"({ort.__version__}); available: {available}. For CUDA/TensorRT install "
                "onnxruntime-gpu (pip install 'liftcam[gpu]') and check the CUDA libraries.")
        out.append((name, dict(opts)) if opts else name)
    if not any((p[0] if isinstance(p, tuple) else p) == CPU for p in out):
        out.append(CPU)
    return out


def provider_names(providers) -> list:
    return [p[0] if isinstance(p, tuple) else p for p in providers]


def session_options(threads=None) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # An Explainer runs several sessions back to back (features, then multipliers), each with its
    # own intra-op pool. With spinning on, the idle pool's workers busy-wait after each run and
    # steal cores from the next session (measured: VGG-16 batch 1 on 2 cores, 1.33x -> 0.9x of
    # plain inference). Blocking workers cost nothing measurable on the big kernels here.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if threads is not None:
        if not isinstance(threads, int) or threads < 1:
            raise InputError(f"threads must be a positive int, got {threads!r}")
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return opts


def make_session(path, providers, threads=None) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), session_options(threads), providers=providers)
