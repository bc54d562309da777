"""The contract between ``export/`` (writes bundles) and ``engine/`` (runs them).

One place for the facts both sides must agree on: the bundle's format version and file names,
the graph roles, and the names of every graph input and output. Dependency-free (no numpy,
no onnx, no onnxruntime), so either side imports it without pulling in the other.
"""

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.bin"            # the one external-data file all graphs share

# ------------------------------------------------------------------ graph input/output names
IMAGE = "image"                    # features/explain input: preprocessed images (N, C, H, W)
ACTIVATION = "activation"          # the target layer's output A (N, K, h, w)
TARGET = "target"                  # int64 (N,): the class to explain, -1 = the predicted one
LOGITS = "logits"                  # (N, num_classes)
MULTIPLIERS = "multipliers"        # DeepLIFT multipliers or gradients of y_c w.r.t. A
ALPHA = "alpha"                    # LIFT-CAM's coefficients (N, K) from the α graph
COEFFICIENTS = "weights"           # explain graphs: per-channel coefficients (N, K)
MAP = "map"                        # explain graphs: the map (N, H, W) in [0, 1]
LOW_RES = "low_res"                # explain graphs: ReLU(Σ_k w_k A_k) before upsampling (N, h, w)
PIXELS = "pixels"                  # explain_raw: decoded uint8 RGB [H, W, 3] or [N, H, W, 3]
OVERLAY = "overlay"                # explain_raw: uint8 [N, H, W, 3], the heatmap over the image

#: image layouts a bundle's input can have (``manifest["input"]["layout"]``)
LAYOUTS = ("NCHW", "NHWC")

# ------------------------------------------------------------------ graph roles
RULES = ("deeplift", "gradient")   # the two multiplier rules (export/lift)


def multipliers_role(rule: str) -> str:
    """The role of the multipliers graph for ``rule`` ("deeplift" or "gradient")."""
    return f"multipliers_{rule}"


FEATURES, HEAD = "features", "head"
EXPLAIN, EXPLAIN_GRADCAM = "explain", "explain_gradcam"
ALPHA_DEEPLIFT = "alpha_deeplift"  # optional: α by channel-partial sums (DESIGN.md §5)
EXPLAIN_RAW = "explain_raw"        # optional: raw pixels in, map at the image's size out

#: graph role -> file name in the bundle directory
GRAPH_FILES = {
    FEATURES: "features.onnx",
    HEAD: "head.onnx",
    multipliers_role("deeplift"): "multipliers_deeplift.onnx",
    multipliers_role("gradient"): "multipliers_gradient.onnx",
    EXPLAIN: "explain.onnx",
    EXPLAIN_GRADCAM: "explain_gradcam.onnx",
    ALPHA_DEEPLIFT: "alpha_deeplift.onnx",
    EXPLAIN_RAW: "explain_raw.onnx",
}
#: roles every bundle must have; the others are optional
REQUIRED_GRAPHS = (FEATURES, HEAD, multipliers_role("deeplift"), multipliers_role("gradient"))
