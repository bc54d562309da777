"""ONNX Runtime sessions over a bundle's graphs: providers, threads, lazy creation.

Sessions are created only for the graphs a call uses. Providers are validated up front: asking
for an execution provider this onnxruntime build does not have is an error, never a silent
fall-back to the CPU. ONNX Runtime's own exceptions (``Fail``, ``InvalidGraph``, ...) never
reach a caller: creating or running a graph that fails is a :class:`BundleError` naming the
graph, and every output is checked against the manifest's shapes (DESIGN.md §11).
"""
from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from liftcam.contract import ACTIVATION, ALPHA, COEFFICIENTS, LOGITS, LOW_RES, MULTIPLIERS
from liftcam.engine.errors import BundleError, InputError, LiftcamError, describe

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


def _one_line(exc, limit=300) -> str:
    text = describe(exc)
    return text if len(text) <= limit else text[:limit] + "..."


def make_session(path, providers, threads=None) -> ort.InferenceSession:
    opts = session_options(threads)
    try:
        return ort.InferenceSession(str(path), opts, providers=providers)
    except (LiftcamError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:       # ORT's pybind errors derive from Exception only
        raise BundleError(f"{path}: ONNX Runtime cannot load this graph "
                          f"({type(exc).__name__}: {_one_line(exc)})") from None


def output_shapes(bundle) -> dict:
    """output name -> (manifest field, the shape after the batch dimension)."""
    K, h, w = bundle.activation_shape
    return {LOGITS: ("num_classes", (bundle.num_classes,)),
            LOW_RES: ("activation.shape", (h, w)),
            ACTIVATION: ("activation.shape", bundle.activation_shape),
            MULTIPLIERS: ("activation.shape", bundle.activation_shape),
            ALPHA: ("activation.shape", (K,)), COEFFICIENTS: ("activation.shape", (K,))}


class GraphSession:
    """An ``InferenceSession`` of one bundle graph whose ``run`` raises BundleError instead of
    ONNX Runtime's exceptions and checks each output against the manifest (a dimension the
    graph left symbolic is checked here, at first use). Everything else is forwarded."""

    def __init__(self, path, providers, threads, expected: dict):
        self.path = Path(path)
        self._session = make_session(path, providers, threads)
        self._expected = expected
        self._names = [o.name for o in self._session.get_outputs()]

    def __getattr__(self, name):
        return getattr(self._session, name)

    def run(self, output_names, feed, *args, **kwargs):
        try:
            outs = self._session.run(output_names, feed, *args, **kwargs)
        except (LiftcamError, MemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise BundleError(f"{self.path}: ONNX Runtime failed running this graph "
                              f"({type(exc).__name__}: {_one_line(exc)})") from None
        for name, a in zip(output_names or self._names, outs):
            if name in self._expected and tuple(a.shape[1:]) != self._expected[name][1]:
                field, want = self._expected[name]
                raise BundleError(f"{self.path}: manifest {field} does not match this graph: "
                                  f"its output {name!r} has shape {tuple(a.shape)}, the "
                                  f"manifest says (N, {', '.join(map(str, want))})")
        return outs
