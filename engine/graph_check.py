"""The manifest against the graphs: roles, the inputs and outputs each role must have, and every
declared dimension that the manifest also states (input shape, activation shape, num_classes).

Cheap: it reads the declared inputs and outputs that :mod:`liftcam.engine.onnx_scan` gathered
while checking external data, with no ONNX Runtime session. A dimension a graph leaves symbolic
is checked at run time instead (:class:`liftcam.engine.sessions.GraphSession`).
"""
from __future__ import annotations

from liftcam.contract import (
    ACTIVATION,
    ALPHA,
    ALPHA_DEEPLIFT,
    COEFFICIENTS,
    EXPLAIN,
    EXPLAIN_GRADCAM,
    EXPLAIN_RAW,
    FEATURES,
    GRAPH_FILES,
    HEAD,
    IMAGE,
    LOGITS,
    LOW_RES,
    MAP,
    MULTIPLIERS,
    OVERLAY,
    PIXELS,
    RULES,
    TARGET,
    multipliers_role,
)
from liftcam.engine.errors import BundleError

FLOAT, INT64 = 1, 7          # TensorProto.DataType


def required_io(input_name: str) -> dict:
    """role -> (inputs, outputs) the engine feeds and reads."""
    req = {FEATURES: ((input_name,), (ACTIVATION,)), HEAD: ((ACTIVATION,), (LOGITS,)),
           ALPHA_DEEPLIFT: ((ACTIVATION, TARGET), (LOGITS, ALPHA))}
    for rule in RULES:
        req[multipliers_role(rule)] = ((ACTIVATION, TARGET), (LOGITS, MULTIPLIERS))
    for role in (EXPLAIN, EXPLAIN_GRADCAM):
        req[role] = ((TARGET,), (LOGITS, COEFFICIENTS, MAP))
    req[EXPLAIN_RAW] = ((PIXELS, TARGET), (LOGITS, COEFFICIENTS, MAP, OVERLAY))
    return req


def expected_shapes(manifest: dict) -> dict:
    """tensor name -> (manifest field, element type, expected dims; None = any)."""
    shape = manifest["input"]["shape"][1:]         # (C, H, W) or, channels last, (H, W, C)
    H, W = shape[1:] if manifest["input"].get("layout", "NCHW") == "NCHW" else shape[:2]
    K, h, w = manifest["activation"]["shape"][1:]
    n = manifest["num_classes"]
    image = ("input.shape", FLOAT, [None, *shape])
    return {manifest["input"]["name"]: image, IMAGE: image,
            ACTIVATION: ("activation.shape", FLOAT, [None, K, h, w]),
            MULTIPLIERS: ("activation.shape", FLOAT, [None, K, h, w]),
            LOGITS: ("num_classes", FLOAT, [None, n]),
            ALPHA: ("activation.shape", FLOAT, [None, K]),
            COEFFICIENTS: ("activation.shape", FLOAT, [None, K]),
            MAP: ("input.shape", FLOAT, [None, H, W]),   # explain_raw's is symbolic: skipped
            LOW_RES: ("activation.shape", FLOAT, [None, h, w]),
            TARGET: ("target", INT64, [None])}


def _compare(where, role, kind, name, typ, expected) -> None:
    field, elem, dims = expected
    got_elem, got = typ
    if got_elem and got_elem != elem:
        raise BundleError(f"{where}: {role} graph's {kind} {name!r} has element type "
                          f"{got_elem}, the engine needs {elem} ({field})")
    if got is None:
        return
    if len(got) != len(dims):
        raise BundleError(f"{where}: manifest {field} does not match the {role} graph: its "
                          f"{kind} {name!r} has {len(got)} dimensions, expected {len(dims)}")
    for i, (g, e) in enumerate(zip(got, dims)):
        if e is not None and isinstance(g, int) and g != e:
            raise BundleError(f"{where}: manifest {field} does not match the {role} graph: "
                              f"its {kind} {name!r} has {g} at dimension {i}, the manifest "
                              f"says {e}")


def check_graphs(manifest: dict, infos: dict, where) -> None:
    """Raise BundleError naming the manifest field that a graph contradicts. ``infos``: role ->
    ModelInfo of that role's graph."""
    unknown = sorted(set(infos) - set(GRAPH_FILES))
    if unknown:
        raise BundleError(f"{where}: manifest graphs has unknown role(s) {unknown}; known: "
                          f"{sorted(GRAPH_FILES)}")
    shapes = expected_shapes(manifest)
    required = required_io(manifest["input"]["name"])
    for role, info in infos.items():
        need_in, need_out = required[role]
        for kind, need, have in (("input", need_in, info.inputs),
                                 ("output", need_out, info.outputs)):
            missing = [t for t in need if t not in have]
            if missing:
                field = "input.name" if manifest["input"]["name"] in missing else "graphs"
                raise BundleError(f"{where}: the {role} graph has no {kind} {missing[0]!r} "
                                  f"(manifest {field}; it has {sorted(have)})")
            for name, typ in have.items():
                if name in shapes:
                    _compare(where, role, kind, name, typ, shapes[name])
