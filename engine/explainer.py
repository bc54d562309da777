"""``Explainer``: ONNX Runtime sessions over a bundle, and ``explain`` for every CAM method.

Run time only: numpy + onnxruntime. Sessions are created on first use, so LIFT-CAM on a CPU
loads two graphs (features and the DeepLIFT multipliers) and nothing else.
"""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field

import numpy as np

from liftcam.contract import (
    ACTIVATION,
    ALPHA,
    ALPHA_DEEPLIFT,
    COEFFICIENTS,
    EXPLAIN,
    FEATURES,
    HEAD,
    IMAGE,
    LOGITS,
    LOW_RES,
    MAP,
    MULTIPLIERS,
    RULES,
    TARGET,
    multipliers_role,
)
from liftcam.engine import methods as _methods
from liftcam.engine import tail
from liftcam.engine.bundle import Bundle, load_bundle
from liftcam.engine.errors import InputError
from liftcam.engine.progress import Progress, is_tty
from liftcam.engine.sessions import (
    CUDA,
    GraphSession,
    output_shapes,
    provider_names,
    resolve_providers,
)
from liftcam.engine.tail import softmax

PATHS = ("auto", "fused", "alpha", "multipliers")


@dataclass
class Explanation:
    """The result of :meth:`Explainer.explain`; all arrays are numpy.

    ``logits`` (N,C), ``targets`` (N,) int64, ``weights`` (N,K) per-channel coefficients,
    ``low_res`` (N,h,w) ReLU of the weighted sum before upsampling, ``maps`` (N,H,W) in [0,1];
    ``extra`` holds method-specific results (``shap_stderr`` for ``shap``).
    """

    method: str
    logits: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    low_res: np.ndarray
    maps: np.ndarray
    extra: dict = field(default_factory=dict)

    def probabilities(self) -> np.ndarray:
        return softmax(self.logits, axis=1).astype(self.logits.dtype)


class Explainer:
    """Explain a bundle's classifier with LIFT-CAM or another CAM method.

    ``providers``: None (CPU), or names/aliases such as ``["cuda"]``, ``["tensorrt", "cuda"]``
    or ``(name, options)`` pairs; an unavailable provider is an error. ``threads``: intra-op
    threads per session (ONNX Runtime's default: one per physical core). ``eval_batch``: the
    batch size of the head/model evaluations that ablation, Score-CAM and SHAP make.
    ``use_kernel``: use the CUDA kernel for the LIFT-CAM tail when CUDA is active
    (default: when it is importable). ``path``: how LIFT-CAM and Grad-CAM run on the CPU:
    ``"auto"`` (the rule of :meth:`path_for`, DESIGN.md §13), ``"fused"`` (the bundle's
    ``explain.onnx`` / ``explain_gradcam.onnx``: one session, tail included), ``"alpha"`` (features,
    then the partial-sums α graph; LIFT-CAM only) or ``"multipliers"`` (features, then the
    multipliers graph, the tail in numpy). Every path gives the same results to float rounding;
    the other methods have one path each.
    """

    def __init__(self, bundle, providers=None, threads=None, eval_batch=64, use_kernel=None,
                 path="auto"):
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.providers = resolve_providers(providers)
        self.threads = threads
        if not isinstance(eval_batch, int) or eval_batch < 1:
            raise InputError(f"eval_batch must be a positive int, got {eval_batch!r}")
        self.eval_batch = eval_batch
        self.on_device = CUDA in provider_names(self.providers)
        self.use_kernel = self._kernel_choice(use_kernel)
        self.path = self._check_path(path)
        self._sessions = {}
        self._locks = {}
        self._locks_lock = threading.Lock()
        self._input_name = self.bundle.manifest["input"]["name"]

    def _kernel_choice(self, use_kernel) -> bool:
        """The CUDA tail kernel: by default when CUDA is active and the kernel can run; asked
        for explicitly, it must be able to run."""
        if use_kernel is False or (use_kernel is None and not self.on_device):
            return False
        from liftcam.kernels import gpu_available

        ok, why = gpu_available()
        if use_kernel and not (self.on_device and ok):
            raise InputError("use_kernel=True needs the CUDA execution provider and a usable "
                             f"GPU with cuda-python ({why or 'CUDA provider not active'})")
        return ok

    # ---------------------------------------------------------------- sessions
    def session(self, role: str):
        """The session of one graph role, created on first use (once, also when threads ask
        for it at the same time: one lock per role)."""
        s = self._sessions.get(role)
        if s is not None:
            return s
        with self._locks_lock:
            lock = self._locks.setdefault(role, threading.Lock())
        with lock:
            if role not in self._sessions:
                self._sessions[role] = GraphSession(self.bundle.graph(role), self.providers,
                                                    self.threads, output_shapes(self.bundle))
        return self._sessions[role]

    # ---------------------------------------------------------------- validation
    def _check_images(self, x) -> np.ndarray:
        shape = self.bundle.input_shape
        want = "(N," + ",".join(map(str, shape)) + f") ({self.bundle.layout})"
        if not isinstance(x, np.ndarray):
            raise InputError(f"x must be a numpy array {want} float32, got "
                             f"{type(x).__name__}")
        if x.dtype != np.float32:
            raise InputError(f"x must be float32, got {x.dtype}; use x.astype(np.float32)")
        if x.ndim != 4 or x.shape[1:] != shape:
            raise InputError(f"x must have shape {want} (preprocessed images), got {x.shape}")
        if x.shape[0] == 0:
            raise InputError("x is an empty batch (N = 0); pass at least one image")
        if not np.isfinite(x).all():
            bad = sorted(set(np.nonzero(~np.isfinite(x))[0].tolist()))
            raise InputError(f"x holds NaN or Inf values (images {bad[:10]}); fix the input")
        return np.ascontiguousarray(x)

    def _check_activation(self, A) -> np.ndarray:
        K, h, w = self.bundle.activation_shape
        if not isinstance(A, np.ndarray) or A.dtype != np.float32 or A.ndim != 4 \
                or A.shape[1:] != (K, h, w) or A.shape[0] == 0:
            got = (A.dtype, A.shape) if isinstance(A, np.ndarray) else type(A).__name__
            raise InputError(f"activation must be float32 (N,{K},{h},{w}) with N ≥ 1, got {got}")
        return np.ascontiguousarray(A)

    def _check_targets(self, targets, N: int):
        """None -> None (predicted class); int -> (N,); sequence -> (N,), all in range."""
        if targets is None:
            return None
        C = self.bundle.num_classes
        if isinstance(targets, (int, np.integer)) and not isinstance(targets, bool):
            t = np.full(N, int(targets), np.int64)
        else:
            try:
                t = np.asarray(targets)
            except Exception as exc:
                raise InputError(f"targets must be None, an int or {N} ints") from exc
            if t.ndim != 1 or t.shape[0] != N:
                raise InputError(f"targets must be None, an int or a sequence of {N} ints (one "
                                 f"per image), got shape {t.shape}")
            if t.dtype.kind not in "iu":
                raise InputError(f"targets must be integers, got dtype {t.dtype}")
            t = t.astype(np.int64)
        bad = (t < 0) | (t >= C)
        if bad.any():
            raise InputError(f"target {int(t[bad][0])} is out of range: the model has {C} "
                             f"classes (0..{C - 1})")
        return t

    # ---------------------------------------------------------------- graphs
    def features(self, x) -> np.ndarray:
        """The target layer's activation A (N,K,h,w) for preprocessed images x (N,C,H,W)."""
        x = self._check_images(x)
        return self.session(FEATURES).run(None, {self._input_name: x})[0]

    def head(self, A) -> np.ndarray:
        """Logits (N,C) from an activation."""
        return self.session(HEAD).run(None, {ACTIVATION: self._check_activation(A)})[0]

    def predict(self, x) -> np.ndarray:
        """Logits (N,C) of the whole model."""
        return self.head(self.features(x))

    def multipliers(self, A, targets=None, rule: str = "deeplift"):
        """``(logits, M)``: DeepLIFT multipliers (rule "deeplift", reference A⁰ = 0) or plain
        gradients (rule "gradient") of the target logits w.r.t. A."""
        if rule not in RULES:
            raise InputError(f"rule must be one of {RULES}, got {rule!r}")
        A = self._check_activation(A)
        t = self._check_targets(targets, A.shape[0])
        feed_t = np.full(A.shape[0], -1, np.int64) if t is None else t
        logits, M = self.session(multipliers_role(rule)).run(
            [LOGITS, MULTIPLIERS], {ACTIVATION: A, TARGET: feed_t})
        return logits, M

    # ---------------------------------------------------------------- explain
    def explain(self, x, targets=None, method: str = "liftcam", batch_size=32,
                progress=True, **options) -> Explanation:
        """Explain images ``x`` (N,C,H,W) float32, already preprocessed.

        ``targets``: None (the predicted class), an int, or N ints. ``method``: one of
        :data:`liftcam.engine.methods.METHODS`. ``batch_size``: images per engine pass
        (default 32, so memory stays bounded whatever N; results do not depend on it; None: all at
        once). ``progress``: True draws a bar on a terminal, False is silent,
        a callable ``tick(n)`` receives the head/model evaluation counts of slow methods.
        ``options``: the method's options (its registry record lists them; ``n_samples``,
        ``seed`` for shap).
        """
        spec = _methods.get(method)
        _methods.check_applicable(spec, self.bundle)
        x = self._check_images(x)
        N = x.shape[0]
        t = self._check_targets(targets, N)
        if batch_size is None:
            batch_size = N
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
        unknown = set(options) - set(spec.options)
        if unknown:
            known = ", ".join(spec.options) or "none"
            raise InputError(f"unknown option(s) {sorted(unknown)} for method {method!r}; "
                             f"it takes: {known}")
        K = self.bundle.activation_shape[0]
        total = spec.count(N, K, **options)
        parts = []
        # progress: a callable gets the evaluation counts; True draws a bar on a terminal
        if callable(progress):
            tick, bar = progress, None
        else:
            bar = Progress(total, method, enabled=bool(progress) and is_tty(sys.stderr))
            tick = bar.update
        try:
            for s in range(0, N, batch_size):
                xs = x[s:s + batch_size]
                ts = None if t is None else t[s:s + batch_size]
                parts.append(self._explain_batch(xs, ts, spec, tick, options, s))
        finally:
            if bar is not None:
                bar.close()
        out = {k: np.concatenate([arrays[k] for arrays, _ in parts]) for k in parts[0][0]}
        extra = {k: np.concatenate([e[k] for _, e in parts]) if isinstance(v, np.ndarray) else v
                 for k, v in parts[0][1].items()}
        return Explanation(method=method, extra=extra, **out)

    def _explain_batch(self, x, t, spec, tick, options, offset=0):
        """One batch: features, the method's weights and saliency, the shared tail."""
        path = self.path_for(spec.name, len(x))
        if path == "device":
            return self._liftcam_on_device(x, t), {}
        if path == "fused":
            return self._fused(x, t, spec.name), {}
        A = self.session(FEATURES).run(None, {self._input_name: x})[0]
        if path == "alpha":
            return self._liftcam_alpha(x, A, t)
        b = _methods.Batch(self, x, A, t, progress=tick, offset=offset)
        weights, S, extra = spec.fn(b, **options)
        low_res, maps = tail.finish(S, self.bundle.image_hw)
        arrays = {"logits": b.logits, "targets": b.targets, "weights": weights,
                  "low_res": low_res, "maps": maps}
        return arrays, extra

    def _check_path(self, path):
        if path not in PATHS:
            raise InputError(f"path must be one of {PATHS}, got {path!r}")
        graphs = self.bundle.manifest["graphs"]
        if path == "alpha" and ALPHA_DEEPLIFT not in graphs:
            raise InputError("path='alpha' needs the bundle's partial-sums graph "
                             "(alpha_deeplift.onnx), which its exporter did not build: the head "
                             "is not pooling + dense layers (DESIGN.md §5); use 'auto'")
        if path == "fused" and not self._fused_ok(EXPLAIN):
            raise InputError("path='fused' needs the bundle's explain.onnx with a 'low_res' "
                             "output (bundles exported by liftcam ≥ 0.2.1); re-export the model "
                             "or use 'auto'")
        return path

    def _fused_ok(self, role) -> bool:
        """Whether ``role``'s one-graph form exists and gives every Explanation field."""
        graphs = self.bundle.manifest["graphs"]
        return role in graphs and LOW_RES in self.bundle.outputs.get(role, ())

    def path_for(self, method: str, batch: int) -> str:
        """How ``method`` runs for a batch of ``batch`` images (DESIGN.md §13): ``"device"``
        (LIFT-CAM with CUDA: IO binding and the tail kernel), ``"fused"`` (the method's one-graph
        form, explain.onnx for LIFT-CAM, explain_gradcam.onnx for Grad-CAM), ``"alpha"``
        (features + the partial-sums α graph) or ``"multipliers"`` (features + a multipliers
        graph or head/model evaluations: every other method). On the CPU the fused graph was
        the fastest or tied at every batch measured (benchmarks/paths.py), so the batch size
        does not change the choice; it is a parameter so that the rule can."""
        role = _methods.get(method).fused
        if role is None:
            return "multipliers"
        if method == "liftcam" and self.on_device:
            return "device"
        want = self.path
        if want in ("auto", "fused"):
            want = "fused" if self._fused_ok(role) else "alpha"
        if want == "alpha" and (method != "liftcam"
                                or ALPHA_DEEPLIFT not in self.bundle.manifest["graphs"]):
            want = "multipliers"
        return want

    def _fused(self, x, t, method):
        """One run of the method's one-graph form: features, coefficients and the tail."""
        feed_t = np.full(len(x), -1, np.int64) if t is None else t
        logits, w, maps, low_res = self.session(_methods.get(method).fused).run(
            [LOGITS, COEFFICIENTS, MAP, LOW_RES], {IMAGE: x, TARGET: feed_t})
        targets = np.argmax(logits, axis=1).astype(np.int64) if t is None else t
        return {"logits": logits, "targets": targets, "weights": w, "low_res": low_res,
                "maps": maps}

    # ---------------------------------------------------------------- CUDA path
    def _device_id(self) -> int:
        for p in self.providers:
            if isinstance(p, tuple) and p[0] == CUDA:
                return int(p[1].get("device_id", 0))
        return 0

    def _liftcam_on_device(self, x, t):
        """LIFT-CAM with the CUDA provider: A and M stay on the GPU (IO binding); the tail runs
        in the CUDA kernel (kernels/liftcam.cu) or, with use_kernel=False, in numpy."""
        import onnxruntime as ort

        dev = self._device_id()
        fs, ms = self.session(FEATURES), self.session(multipliers_role("deeplift"))
        b1 = fs.io_binding()
        b1.bind_cpu_input(self._input_name, x)
        b1.bind_output(ACTIVATION, "cuda", dev)
        fs.run_with_iobinding(b1)
        A = b1.get_outputs()[0]
        b2 = ms.io_binding()
        b2.bind_ortvalue_input(ACTIVATION, A)
        b2.bind_cpu_input(TARGET, np.full(len(x), -1, np.int64) if t is None else t)
        b2.bind_output(LOGITS)
        b2.bind_output(MULTIPLIERS, "cuda", dev)
        ms.run_with_iobinding(b2)
        logits_v, M = b2.get_outputs()
        logits = logits_v.numpy()
        targets = t if t is not None else np.argmax(logits, axis=1).astype(np.int64)
        N, (K, h, w), (H, W) = len(x), self.bundle.activation_shape, self.bundle.image_hw
        if not self.use_kernel:
            A_h, M_h = A.numpy(), M.numpy()
            weights = tail.liftcam_coefficients(A_h, M_h)
            low_res, maps = tail.finish(tail.weighted_sum(A_h, weights), (H, W))
        else:
            from liftcam.kernels import get_launcher, tail_ortvalues

            new = ort.OrtValue.ortvalue_from_shape_and_type
            out = {"maps": new((N, H, W), np.float32, "cuda", dev),
                   "alpha": new((N, K), np.float32, "cuda", dev),
                   "low_res": new((N, h, w), np.float32, "cuda", dev)}
            tail_ortvalues(A, M, out["maps"], alpha=out["alpha"], low_res=out["low_res"],
                           device=dev)
            get_launcher(device=dev).synchronize()
            weights, low_res, maps = (out[k].numpy() for k in ("alpha", "low_res", "maps"))
        return {"logits": logits, "targets": targets, "weights": weights, "low_res": low_res,
                "maps": maps}

    def _liftcam_alpha(self, x, A, t):
        """CPU LIFT-CAM from the bundle's channel-partial-sums graph (DESIGN §5): α directly,
        without the multipliers M (no second read of the first dense layer's weights)."""
        feed_t = np.full(A.shape[0], -1, np.int64) if t is None else t
        logits, w = self.session(ALPHA_DEEPLIFT).run([LOGITS, ALPHA],
                                                     {ACTIVATION: A, TARGET: feed_t})
        targets = np.argmax(logits, axis=1).astype(np.int64) if t is None else t
        low_res, maps = tail.finish(tail.weighted_sum(A, w), self.bundle.image_hw)
        return {"logits": logits, "targets": targets, "weights": w, "low_res": low_res,
                "maps": maps}, {}
