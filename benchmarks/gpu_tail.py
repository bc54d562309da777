#!/usr/bin/env python
"""The CAM tail on a GPU: liftcam.cu kernel vs the same tail as ONNX Runtime graph ops
(CUDA EP, IO binding) vs torch (CUDA).

    python benchmarks/gpu_tail.py [--batches 1,2,4,...,256] [--configs 2048x7x7:224,512x14x14:224]
                                  [--repeats 50] [--json gpu_tail.json] [--device 0]

The tail, for every row: alpha = sum_ij A*M; low = ReLU(sum_k alpha_k A_k); bilinear
upsample (half pixel) to H x W; per-image min-max. Inputs already live on the GPU; only
the tail is timed (wall clock around `repeats` back-to-back runs, synchronised).

"Bandwidth" is the minimum traffic of the tail -- read A and M once, write alpha, low and
maps once -- divided by the time; "% of D2D" compares it with the device-to-device copy
bandwidth measured here (cuMemcpyDtoD: read + write bytes per second).

Prints a Markdown table on stdout and writes JSON. Exits with status 2 and a one-line
message on stderr when there is no CUDA GPU (or no cuda-python).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.dirname(HERE) not in sys.path:  # running from a checkout
    sys.path.insert(0, os.path.dirname(HERE))

NO_GPU_EXIT = 2


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", default="1,2,4,8,16,32,64,128,256")
    p.add_argument("--configs", default="2048x7x7:224,512x14x14:224",
                   help="comma-separated KxHxW:OUT (output OUT x OUT)")
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--device", type=int, default=0)
    p.add_argument("--json", default="gpu_tail.json")
    p.add_argument("--no-ort", action="store_true")
    p.add_argument("--no-torch", action="store_true")
    return p.parse_args(argv)


def parse_configs(text):
    out = []
    for item in text.split(","):
        chw, size = item.split(":")
        K, h, w = (int(v) for v in chw.lower().split("x"))
        out.append((K, h, w, int(size), int(size)))
    return out


# ----------------------------------------------------------------------------- helpers
def _drv():
    from cuda.bindings import driver
    return driver


def _ck(res, what):
    err = res[0] if isinstance(res, tuple) else res
    if int(err) != 0:
        raise RuntimeError(f"{what}: {err}")
    return res[1] if isinstance(res, tuple) and len(res) > 1 else None


def timed(fn, sync, repeats, warmup):
    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - t0) / repeats


def measure_d2d_bandwidth(launcher, nbytes=256 << 20, repeats=20):
    drv = _drv()
    with launcher._ctx():
        src = launcher._b.alloc(nbytes)
        dst = launcher._b.alloc(nbytes)
    try:
        def copy():
            with launcher._ctx():
                _ck(drv.cuMemcpyDtoD(dst, src, nbytes), "cuMemcpyDtoD")
        t = timed(copy, launcher.synchronize, repeats, 3)
    finally:
        with launcher._ctx():
            launcher._b.free(src)
            launcher._b.free(dst)
    return 2 * nbytes / t  # read + write


def tail_onnx_model(N, K, h, w, H, W):
    import onnx
    from onnx import TensorProto, helper
    f = TensorProto.FLOAT
    i64 = lambda name, vals: helper.make_tensor(name, TensorProto.INT64, [len(vals)], vals)  # noqa
    inits = [i64("ax23", [2, 3]), i64("ax1", [1]), i64("sizes", [N, 1, H, W]),
             helper.make_tensor("zero", f, [], [0.0]),
             helper.make_tensor("tiny", f, [], [1e-30])]
    nodes = [
        helper.make_node("Mul", ["A", "M"], ["AM"]),
        helper.make_node("ReduceSum", ["AM", "ax23"], ["alpha4"], keepdims=1),
        helper.make_node("Mul", ["alpha4", "A"], ["wA"]),
        helper.make_node("ReduceSum", ["wA", "ax1"], ["S"], keepdims=1),
        helper.make_node("Relu", ["S"], ["low4"]),
        helper.make_node("Resize", ["low4", "", "", "sizes"], ["up"], mode="linear",
                         coordinate_transformation_mode="half_pixel"),
        helper.make_node("ReduceMin", ["up", "ax23"], ["mn"], keepdims=1),
        helper.make_node("ReduceMax", ["up", "ax23"], ["mx"], keepdims=1),
        helper.make_node("Sub", ["mx", "mn"], ["rng"]),
        helper.make_node("Max", ["rng", "tiny"], ["den"]),
        helper.make_node("Sub", ["up", "mn"], ["num"]),
        helper.make_node("Div", ["num", "den"], ["q"]),
        helper.make_node("Greater", ["rng", "zero"], ["ok"]),
        helper.make_node("Where", ["ok", "q", "zero"], ["maps4"]),
        helper.make_node("Squeeze", ["maps4", "ax1"], ["maps"]),
        helper.make_node("Squeeze", ["alpha4", "ax23"], ["alpha"]),
    ]
    graph = helper.make_graph(
        nodes, "liftcam_tail",
        [helper.make_tensor_value_info("A", f, [N, K, h, w]),
         helper.make_tensor_value_info("M", f, [N, K, h, w])],
        [helper.make_tensor_value_info("maps", f, [N, H, W]),
         helper.make_tensor_value_info("alpha", f, [N, K])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


# ----------------------------------------------------------------------------- runners
def bench_kernel(launcher, A, M, H, W, repeats, warmup):
    N, K, h, w = A.shape
    dA, dM = launcher.to_device(A), launcher.to_device(M)
    maps, alpha, low = launcher.empty((N, H, W)), launcher.empty((N, K)), launcher.empty((N, h, w))
    try:
        def run():
            launcher.tail_multipliers(dA.ptr, dM.ptr, maps.ptr, N, K, h, w, H, W,
                                      alpha=alpha.ptr, low_res=low.ptr)
        t = timed(run, launcher.synchronize, repeats, warmup)
        return t, maps.download()
    finally:
        for b in (dA, dM, maps, alpha, low):
            b.free()


def bench_ort(ort, A, M, H, W, device, repeats, warmup):
    N, K, h, w = A.shape
    so = ort.SessionOptions()
    sess = ort.InferenceSession(tail_onnx_model(N, K, h, w, H, W), so,
                                providers=[("CUDAExecutionProvider", {"device_id": device})])
    oA = ort.OrtValue.ortvalue_from_numpy(A, "cuda", device)
    oM = ort.OrtValue.ortvalue_from_numpy(M, "cuda", device)
    oMaps = ort.OrtValue.ortvalue_from_shape_and_type([N, H, W], np.float32, "cuda", device)
    oAlpha = ort.OrtValue.ortvalue_from_shape_and_type([N, K], np.float32, "cuda", device)
    io = sess.io_binding()
    io.bind_ortvalue_input("A", oA)
    io.bind_ortvalue_input("M", oM)
    io.bind_ortvalue_output("maps", oMaps)
    io.bind_ortvalue_output("alpha", oAlpha)
    t = timed(lambda: sess.run_with_iobinding(io), io.synchronize_outputs, repeats, warmup)
    return t, oMaps.numpy()


def bench_torch(torch, A, M, H, W, device, repeats, warmup):
    F = torch.nn.functional
    dev = torch.device("cuda", device)
    tA, tM = torch.from_numpy(A).to(dev), torch.from_numpy(M).to(dev)

    def run():
        alpha = (tA * tM).sum(dim=(2, 3))
        low = torch.relu(torch.einsum("nk,nkij->nij", alpha, tA))
        up = F.interpolate(low[:, None], size=(H, W), mode="bilinear", align_corners=False)[:, 0]
        mn = up.amin(dim=(1, 2), keepdim=True)
        mx = up.amax(dim=(1, 2), keepdim=True)
        rng = mx - mn
        return torch.where(rng > 0, (up - mn) / rng.clamp_min(1e-30), torch.zeros_like(up))

    t = timed(run, lambda: torch.cuda.synchronize(dev), repeats, warmup)
    return t, run().cpu().numpy()


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        from liftcam.kernels import KernelUnavailableError, get_launcher, gpu_available
    except Exception as exc:  # pragma: no cover
        print(f"gpu_tail: cannot import liftcam.kernels: {exc}", file=sys.stderr)
        return NO_GPU_EXIT
    ok, why = gpu_available()
    if not ok:
        print(f"gpu_tail: no CUDA GPU: {why.rstrip('.')}. Nothing to benchmark.", file=sys.stderr)
        return NO_GPU_EXIT
    try:
        lau = get_launcher("cuda-python", args.device)
    except KernelUnavailableError as exc:
        print(f"gpu_tail: no CUDA GPU usable by the kernel: {exc}", file=sys.stderr)
        return NO_GPU_EXIT

    ort = None
    if not args.no_ort:
        try:
            import onnxruntime as ort  # noqa: F811
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                print("gpu_tail: onnxruntime has no CUDA EP (install onnxruntime-gpu); "
                      "ORT column skipped", file=sys.stderr)
                ort = None
        except ImportError:
            ort = None
    torch = None
    if not args.no_torch:
        try:
            import torch  # noqa: F811
            if not torch.cuda.is_available():
                torch = None
        except ImportError:
            torch = None

    from liftcam.engine import tail as T
    d2d = measure_d2d_bandwidth(lau)
    rows = []
    batches = [int(b) for b in args.batches.split(",")]
    for (K, h, w, H, W) in parse_configs(args.configs):
        for N in batches:
            rng = np.random.default_rng(N * 7919 + K)
            A = np.maximum(rng.standard_normal((N, K, h, w)), 0).astype(np.float32)
            M = (rng.standard_normal((N, K, h, w)) * 0.5 + 0.2).astype(np.float32)
            nbytes = 4 * (2 * A.size + N * K + N * h * w + N * H * W)
            row = {"N": N, "K": K, "h": h, "w": w, "H": H, "W": W, "min_bytes": nbytes}
            tk, maps_k = bench_kernel(lau, A, M, H, W, args.repeats, args.warmup)
            row["kernel_ms"] = tk * 1e3
            if N <= 8:  # spot check against the numpy specification
                _, ref = T.finish(T.weighted_sum(A, T.liftcam_coefficients(A, M)), (H, W))
                row["kernel_max_abs_err"] = float(np.abs(maps_k - ref).max())
            if ort is not None:
                try:
                    to, _ = bench_ort(ort, A, M, H, W, args.device, args.repeats, args.warmup)
                    row["ort_ms"] = to * 1e3
                except Exception as exc:
                    row["ort_error"] = str(exc)[:200]
            if torch is not None:
                try:
                    tt, _ = bench_torch(torch, A, M, H, W, args.device, args.repeats, args.warmup)
                    row["torch_ms"] = tt * 1e3
                except Exception as exc:
                    row["torch_error"] = str(exc)[:200]
            for key in ("kernel", "ort", "torch"):
                if f"{key}_ms" in row:
                    bw = nbytes / (row[f"{key}_ms"] / 1e3)
                    row[f"{key}_GBps"] = bw / 1e9
                    row[f"{key}_pct_d2d"] = 100 * bw / d2d
            rows.append(row)
            print(f"  N={N:4d} K={K} {h}x{w}->{H}x{W}: kernel {row['kernel_ms']:.3f} ms",
                  file=sys.stderr)

    dev_name = "cuda:%d" % args.device
    try:
        dev_name = lau._b.dev.name
    except Exception:
        pass
    fmt = lambda r, k: f"{r[k]:.3f}" if k in r else "-"  # noqa: E731
    pct = lambda r, k: f"{r[k]:.0f}%" if k in r else "-"  # noqa: E731
    print(f"## CAM tail on {dev_name} (D2D copy {d2d / 1e9:.0f} GB/s)\n")
    print("| N | K | h×w → H×W | MB moved | kernel ms | kernel GB/s (% D2D) | ORT ms | ORT % D2D "
          "| torch ms | torch % D2D |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['N']} | {r['K']} | {r['h']}×{r['w']} → {r['H']}×{r['W']} | "
              f"{r['min_bytes'] / 1e6:.1f} | {fmt(r, 'kernel_ms')} | "
              f"{r['kernel_GBps']:.0f} ({pct(r, 'kernel_pct_d2d')}) | {fmt(r, 'ort_ms')} | "
              f"{pct(r, 'ort_pct_d2d')} | {fmt(r, 'torch_ms')} | {pct(r, 'torch_pct_d2d')} |")
    report = {"device": dev_name, "d2d_GBps": d2d / 1e9, "repeats": args.repeats,
              "host": platform.node(), "python": platform.python_version(),
              "onnxruntime": getattr(ort, "__version__", None),
              "torch": getattr(torch, "__version__", None), "rows": rows}
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
