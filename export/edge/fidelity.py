"""How close a compressed explain graph's maps are to the float32 ones (``liftcam edge``).

For each image: Pearson correlation of the two maps over all pixels, and the IoU of their
top-20% regions (the ``ceil(0.2·H·W)`` largest pixels of each map, ties broken by pixel
order); over the images: top-1 agreement of the logits. The variant explains the class that
float32 predicts, so a map difference is the quantisation's, not a class flip's (which
top-1 agreement counts apart). Measured in ONNX Runtime on CPU, never assumed.
"""
from __future__ import annotations

import math
import time

import numpy as np
import onnxruntime as ort

from liftcam.contract import IMAGE, LOGITS, MAP, TARGET
from liftcam.metrics.agreement import _rowwise_pearson

TOP_FRACTION = 0.2


def session(path, threads: int = 1) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_explain(sess: ort.InferenceSession, x: np.ndarray, targets=None):
    """(logits (N, C), maps (N, H, W)) one image at a time (batch 1, as on a device)."""
    logits, maps = [], []
    for i in range(len(x)):
        t = np.array([-1 if targets is None else int(targets[i])], np.int64)
        lg, m = sess.run([LOGITS, MAP], {IMAGE: x[i:i + 1], TARGET: t})
        logits.append(lg[0])
        maps.append(m[0])
    return np.stack(logits).astype(np.float32), np.stack(maps).astype(np.float32)


def latency_ms(sess: ort.InferenceSession, x: np.ndarray, targets, repeats: int = 3) -> float:
    """Median wall time of one batch-1 call over ``repeats`` passes of the images (after one
    warm-up call)."""
    feeds = [{IMAGE: x[i:i + 1], TARGET: np.array([int(targets[i])], np.int64)}
             for i in range(len(x))]
    sess.run([MAP], feeds[0])
    times = []
    for _ in range(repeats):
        for f in feeds:
            t0 = time.perf_counter()
            sess.run([MAP], f)
            times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def top_region_iou(a: np.ndarray, b: np.ndarray, fraction: float = TOP_FRACTION) -> np.ndarray:
    """Per image, IoU of the top-``fraction`` pixels of map ``a`` and of map ``b`` (N, H, W)."""
    a2, b2 = a.reshape(len(a), -1), b.reshape(len(b), -1)
    k = max(1, math.ceil(fraction * a2.shape[1]))

    def top(v):
        sel = np.zeros(v.shape, bool)
        np.put_along_axis(sel, np.argsort(-v, axis=1, kind="stable")[:, :k], True, axis=1)
        return sel

    ta, tb = top(a2), top(b2)
    return (ta & tb).sum(1) / (ta | tb).sum(1)


def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per image Pearson r of two (N, H, W) maps; identical maps give exactly 1, a constant
    map against a varying one 0."""
    a2 = a.reshape(len(a), -1).astype(np.float64)
    b2 = b.reshape(len(b), -1).astype(np.float64)
    r, _ = _rowwise_pearson(a2, b2)
    r[(a2 == b2).all(axis=1)] = 1.0
    return r


def compare(ref_logits, ref_maps, logits, maps) -> dict:
    """The fidelity numbers of one variant against float32 (JSON-ready)."""
    r, iou = pearson(ref_maps, maps), top_region_iou(ref_maps, maps)
    top1 = np.argmax(ref_logits, 1) == np.argmax(logits, 1)
    return {
        "top1_agreement": float(top1.mean()),
        "pearson": {"mean": float(r.mean()), "worst": float(r.min())},
        "iou_top20": {"mean": float(iou.mean()), "worst": float(iou.min())},
        "map_max_abs_diff": float(np.abs(ref_maps - maps).max()),
        "per_image": [{"pearson": float(p), "iou_top20": float(i), "top1_agrees": bool(t)}
                      for p, i, t in zip(r, iou, top1)],
    }
