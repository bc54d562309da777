"""The exporter's public functions: ``export_model``, ``export_onnx`` and ``candidate_layers``.

Both entry points end in one pipeline (:func:`_bundle_from_onnx`): split the ONNX graph at the
target tensor, verify ``head(features(x)) == model(x)`` on random inputs, generate the DeepLIFT
and gradient multiplier graphs and the fused ``explain.onnx``, and write the bundle.
"""
from __future__ import annotations

import datetime
import platform
from pathlib import Path

import numpy as np

from liftcam.contract import (
    ALPHA_DEEPLIFT,
    EXPLAIN,
    EXPLAIN_GRADCAM,
    EXPLAIN_RAW,
    FEATURES,
    HEAD,
    RULES,
    multipliers_role,
)
from liftcam.engine.errors import ExportError, LayerError

#: the split (features then head) against the unsplit ONNX model, both in ONNX Runtime: the
#: same engine and the same kernels, so only a wrong cut moves the logits (DESIGN.md §2)
VERIFY_RTOL = 1e-5
#: the reference (the PyTorch model's logits) against the unsplit ONNX model: float32 in two
#: engines differs by the model's own depth and scale (random-weights EfficientNet-V2: 1.4e-3);
#: allowed: this much at least, else BASELINE_FACTOR x the measured baseline, at most
#: BASELINE_MAX (beyond it the ONNX export itself is wrong, whatever the cut)
REFERENCE_RTOL, BASELINE_FACTOR, BASELINE_MAX = 1e-4, 4.0, 1e-2
IMAGENET_PREPROCESSING = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                          "scale": 255.0, "channel_order": "RGB", "resize_mode": "bilinear"}


def _version() -> str:
    from liftcam import __version__

    return __version__


def _softmax(x, log=False):
    z = x - x.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
    return z - lse if log else np.exp(z - lse)


def _check_split(features, head, image_name, x, expected, stripped, whole) -> dict:
    """Run features then head on ``x``; compare with the unsplit ONNX model ``whole`` (tightly)
    and with ``expected`` (the original model's output; to the measured ONNX baseline)."""
    from liftcam.export.split import relative_error, run_onnx

    (act,) = run_onnx(features, {image_name: x})
    (logits,) = run_onnx(head, {"activation": act})
    (unsplit,) = run_onnx(whole, {image_name: x})

    def probs(z):
        return _softmax(z.astype(np.float64), log=(stripped == "LogSoftmax")) if stripped else z
    got, unsplit = probs(logits), probs(unsplit)
    baseline = relative_error(unsplit, expected)
    if not baseline <= BASELINE_MAX:
        raise ExportError(
            f"the ONNX export of the model does not reproduce it: max relative error "
            f"{baseline:.3g} > {BASELINE_MAX} before any cut (batch {x.shape[0]}). The model may "
            "be non-deterministic (dropout in training mode? call model.eval()), or hold ops "
            "that depend on the batch size")
    err = relative_error(got, unsplit)
    if not err <= VERIFY_RTOL:
        raise ExportError(
            f"the split model does not reproduce the original: max relative error {err:.3g} > "
            f"{VERIFY_RTOL} against the unsplit ONNX model (batch {x.shape[0]}). The cut may "
            "cross a dependency the graph does not show, or the model hold ops that depend on "
            "the batch size")
    ref_err = relative_error(got, expected)
    ref_tol = min(max(REFERENCE_RTOL, BASELINE_FACTOR * baseline), BASELINE_MAX)
    if not ref_err <= ref_tol:
        raise ExportError(
            f"the split model does not reproduce the original: max relative error {ref_err:.3g} "
            f"> {ref_tol:.3g} (the ONNX export alone: {baseline:.3g}; batch {x.shape[0]})")
    return {"split": err, "reference": ref_err, "baseline": baseline, "reference_rtol": ref_tol}


def _is_linear_head(head) -> bool:
    """GAP/flatten then one dense layer (plus bias): CAM's weights are exact for such heads."""
    ops = [n.op_type for n in head.graph.node]
    allowed = {"GlobalAveragePool", "ReduceMean", "Flatten", "Reshape", "Squeeze", "Gemm",
               "MatMul", "Add", "Identity", "Dropout", "Shape", "Gather", "Unsqueeze", "Concat",
               "Constant"}
    return (set(ops) <= allowed and sum(o in ("Gemm", "MatMul") for o in ops) == 1
            and sum(o in ("GlobalAveragePool", "ReduceMean") for o in ops) == 1)


def _bundle_from_onnx(model, tensor, act_shape, verify_inputs, out_dir, meta, overwrite):
    """The shared tail of export and export_onnx. ``verify_inputs``: [(x, expected_output)]."""
    import onnx
    import onnxruntime

    from liftcam.export import lift
    from liftcam.export.bundle_writer import write_bundle
    from liftcam.export.fuse import build_explain_model
    from liftcam.export.partial_sums import NotApplicable, build_alpha_model
    from liftcam.export.raw import build_raw_model
    from liftcam.export.split import _graph_input, split, strip_final_softmax

    model, stripped = strip_final_softmax(model)
    image_name = _graph_input(model).name
    features, head = split(model, tensor, act_shape)
    errors = [_check_split(features, head, image_name, x, y, stripped, model)
              for x, y in verify_inputs]
    num_classes = int(verify_inputs[0][1].shape[1])
    models = {FEATURES: features, HEAD: head}
    for rule in RULES:
        models[multipliers_role(rule)] = lift.build_multipliers_model(head, rule)
    deeplift = models[multipliers_role("deeplift")]
    try:   # DESIGN.md §5: α by channel-partial sums of the first dense layer, where valid
        models[ALPHA_DEEPLIFT] = build_alpha_model(head, features, act_shape,
                                                   multipliers=deeplift)
    except NotApplicable:
        pass
    layout = meta.get("layout", "NCHW")
    models[EXPLAIN] = build_explain_model(features, deeplift, "liftcam", layout,
                                          alpha=models.get(ALPHA_DEEPLIFT))
    models[EXPLAIN_GRADCAM] = build_explain_model(
        features, models[multipliers_role("gradient")], "gradcam", layout)
    in_shape = [d.dim_value for d in _graph_input(model).type.tensor_type.shape.dim[1:]]
    try:   # DESIGN.md §8: raw pixels in, the map at the image's own size out
        models[EXPLAIN_RAW] = build_raw_model(models[EXPLAIN], meta["preprocessing"], in_shape,
                                              layout=layout)
        raw_note = None
    except ExportError as exc:
        raw_note = str(exc)
    manifest = {
        "liftcam_version": _version(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": meta["source"],
        "input": {"name": image_name, "layout": layout, "shape": [None, *in_shape],
                  "dtype": "float32"},
        "preprocessing": meta["preprocessing"],
        "target_layer": meta["target_layer"],
        "activation": {"name": "activation", "shape": [None, *act_shape]},
        "num_classes": num_classes,
        "labels": meta.get("labels"),
        "output": {"name": "logits", "stripped_final": stripped, **meta.get("output", {})},
        "head": {"linear": _is_linear_head(head)},
        "opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        "exporter": {"liftcam": _version(), "onnx": onnx.__version__,
                     "onnxruntime": onnxruntime.__version__, "python": platform.python_version(),
                     **meta.get("versions", {})},
        "verification": {
            "max_relative_error": max(e["split"] for e in errors), "rtol": VERIFY_RTOL,
            "reference_relative_error": max(e["reference"] for e in errors),
            "onnx_baseline_error": max(e["baseline"] for e in errors),
            "reference_rtol": max(e["reference_rtol"] for e in errors),
            "batch_sizes": [int(x.shape[0]) for x, _ in verify_inputs]},
    }
    # which graph explain.onnx takes LIFT-CAM's coefficients from (DESIGN.md §5)
    manifest["explain_coefficients"] = (ALPHA_DEEPLIFT if ALPHA_DEEPLIFT in models
                                        else multipliers_role("deeplift"))
    if raw_note is not None:
        manifest["explain_raw_skipped"] = raw_note
    labels = meta.get("labels")
    if labels is not None and len(labels) != num_classes:
        raise ExportError(f"{len(labels)} labels given for a model with {num_classes} classes")
    return write_bundle(out_dir, models, manifest, overwrite=overwrite)


def _default_out_dir(out_dir, stem) -> Path:
    return Path(out_dir) if out_dir is not None else Path(f"{stem}.liftcam")


def _preprocessing(hw, preprocessing):
    """The recorded preprocessing: ImageNet's mean/std, resize to the input's (H, W), and the
    caller's overrides (liftcam keys, or a transformers image processor / its config dict,
    translated by :func:`liftcam.export.hf.preprocessing_from_hf`)."""
    from liftcam.export.hf import final_hw, is_hf_config, preprocessing_from_hf

    pre = dict(IMAGENET_PREPROCESSING)
    pre["resize"] = [int(hw[0]), int(hw[1])]
    if preprocessing is not None and is_hf_config(preprocessing):
        preprocessing = preprocessing_from_hf(preprocessing)
        got = final_hw(preprocessing)
        if got is not None and tuple(got) != tuple(int(d) for d in hw):
            raise ExportError(
                f"the image processor makes {got[0]}x{got[1]} images but the model input is "
                f"{hw[0]}x{hw[1]}; pass input_shape=(3, {got[0]}, {got[1]}) or leave it None")
    if preprocessing:
        pre.update(preprocessing)
    return pre


def _input_shape(input_shape, preprocessing):
    """``input_shape`` as a tuple; None: (3, H, W) from the preprocessing's final size, else
    (3, 224, 224)."""
    if input_shape is None:
        from liftcam.export.hf import final_hw, is_hf_config, preprocessing_from_hf

        pre = preprocessing or {}
        if is_hf_config(pre):
            pre = preprocessing_from_hf(pre)
        hw = final_hw(pre) or (224, 224)
        input_shape = (3, *hw)
    return tuple(int(d) for d in input_shape)


def export_model(model, target_layer=None, input_shape=None, out_dir=None, labels=None,
                 preprocessing=None, overwrite=False, output=None):
    """Split a PyTorch classifier at ``target_layer`` and write a bundle directory.

    ``target_layer``: a dotted module name (``"layer4"``, ``"features.29"``) or the module
    itself; None picks the last 4-D activation before global pooling / flattening, in the
    last stage. ``input_shape``: (C, H, W); None takes (3, H, W) from the preprocessing's
    final size, else (3, 224, 224).
    ``preprocessing`` overrides keys of the recorded preprocessing (ImageNet mean/std by
    default); a transformers image processor or its config dict is translated
    (:func:`liftcam.export.hf.preprocessing_from_hf`).
    ``output``: where the logits are when the model returns a structure (a ModelOutput/dict
    key or attribute, a tuple index); None takes ``logits`` or the first tensor
    (:mod:`liftcam.export.outputs`). Models whose forward takes ``pixel_values=`` work as is.
    Returns the bundle's path.
    """
    import torch

    from liftcam.export.capture import module_name, torch_to_onnx
    from liftcam.export.outputs import ModelCall
    from liftcam.export.split import candidates, crossing_tensors, default_cut

    if not isinstance(model, torch.nn.Module):
        raise ExportError(f"export_model() takes a torch.nn.Module, got {type(model).__name__}; "
                          "for an ONNX file use export_onnx()")
    input_shape = _input_shape(input_shape, preprocessing)
    if len(input_shape) != 3:
        raise ExportError(f"input_shape must be (C, H, W), got {input_shape}")
    was_training = model.training
    model.eval()
    try:
        layers = None if target_layer is None else [module_name(model, target_layer)]
        call = ModelCall(model, output)
        onnx_model, names, logits, example = torch_to_onnx(model, input_shape, layers, call)
        if layers is None:
            cut = default_cut(candidates(onnx_model, input_shape, names), named_only=True)
            tensor, name, act_shape = cut.tensor, cut.name, cut.shape
            aliases = cut.names[1:]
        else:
            (tensor,) = [t for t, ns in names.items() if layers[0] in ns]
            from liftcam.export.split import activation_shapes

            act_shape = activation_shapes(onnx_model, input_shape)[tensor][1:]
            name, aliases = layers[0], [n for n in names[tensor] if n != layers[0]]
            crossing = crossing_tensors(onnx_model, tensor)
            if crossing:   # name the layer the user asked for, not the internal mark tensor
                raise LayerError(
                    f"cannot cut at layer {name!r}: a skip connection crosses the cut; the head "
                    f"would need these tensors from before it: {crossing}. Choose a layer at a "
                    "block boundary")
        with torch.no_grad():
            one = call(torch.from_numpy(example[:1])).numpy()
    finally:
        model.train(was_training)
    meta = {
        "source": {"kind": "pytorch", "class": type(model).__name__},
        "target_layer": {"name": name, "aliases": aliases, "tensor": tensor},
        "preprocessing": _preprocessing(input_shape[1:], preprocessing),
        "labels": list(labels) if labels is not None else None,
        "versions": {"torch": torch.__version__},
        "output": call.describe(),
    }
    return _bundle_from_onnx(onnx_model, tensor, tuple(act_shape),
                             [(example, logits), (example[:1], one)],
                             _default_out_dir(out_dir, type(model).__name__.lower()), meta,
                             overwrite)


def _load_onnx(path):
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise ExportError(f"{path} is not a readable ONNX model: {exc}") from exc
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < 13:
        from onnx import version_converter

        model = version_converter.convert_version(model, 17)
    return model


def export_onnx(path, activation=None, out_dir=None, input_shape=None, labels=None,
                preprocessing=None, overwrite=False, layout=None):
    """Split an ONNX classifier at the tensor named ``activation`` and write a bundle.

    ``activation`` None picks the last 4-D activation before global pooling / flattening.
    ``layout``: "NCHW" or "NHWC" (channels last, as tf2onnx writes Keras models); None detects
    it and refuses when the graph does not tell. ``input_shape``: one image's shape in that
    layout, needed when the file declares symbolic sizes. The model's batch axis is made
    dynamic; a model whose graph hard-codes its batch size is refused at verification.
    """
    from liftcam.export.onnx_input import fix_input_dims, image_hw, input_layout, input_shape_of
    from liftcam.export.split import (
        _graph_input,
        activation_shapes,
        candidates,
        default_cut,
        make_batch_dynamic,
        run_onnx,
    )

    model = _load_onnx(path)
    layout = input_layout(model, layout, input_shape)
    input_shape = input_shape_of(model, input_shape, layout)
    fix_input_dims(model, input_shape)
    original = type(model)()
    original.CopyFrom(model)
    make_batch_dynamic(model)
    if activation is None:
        cut = default_cut(candidates(model, input_shape))
        activation, act_shape = cut.tensor, cut.shape
    else:
        shapes = activation_shapes(model, input_shape)
        if activation not in shapes:
            import difflib

            four_d = [t for t, s in shapes.items() if len(s) == 4]
            close = difflib.get_close_matches(str(activation), four_d, n=5, cutoff=0.3)
            raise LayerError(f"the model has no float tensor named {activation!r}. "
                             f"Closest 4-D tensors: {close}")
        if len(shapes[activation]) != 4:
            raise LayerError(f"tensor {activation!r} has shape {shapes[activation]}, not a 4-D "
                              "activation (N,K,h,w)")
        act_shape = shapes[activation][1:]
    rng = np.random.default_rng(0)
    name = _graph_input(original).name
    verify = []
    for n in (2, 1):
        x = rng.standard_normal((n, *input_shape)).astype(np.float32)
        try:
            (y,) = run_onnx(model, {name: x})
        except Exception as exc:
            raise ExportError(f"the model does not run at batch {n} with a dynamic batch axis "
                              f"({exc}); re-export it with a dynamic batch dimension") from exc
        verify.append((x, y))
    meta = {
        "source": {"kind": "onnx", "file": Path(path).name},
        "layout": layout,
        "target_layer": {"name": activation, "aliases": [], "tensor": activation},
        "preprocessing": _preprocessing(image_hw(input_shape, layout), preprocessing),
        "labels": list(labels) if labels is not None else None,
    }
    return _bundle_from_onnx(model, activation, tuple(act_shape), verify,
                             _default_out_dir(out_dir, Path(path).stem), meta, overwrite)


def candidate_layers(model_or_path, input_shape=(3, 224, 224), layout=None,
                     output=None) -> list:
    """The layers a model can be cut at (4-D outputs), best candidates first.

    Each entry is a dict: ``name`` (module name, or tensor name for ONNX), ``tensor``, ``shape``
    (K, h, w), ``op``, ``cuttable`` (False when a skip connection crosses the cut),
    ``crossing`` (the tensors that cross) and ``aliases`` (other modules with the same output).
    The first cuttable entry is the default target layer. ``output``: as for export_model.
    """
    from liftcam.export.split import candidates, make_batch_dynamic

    if isinstance(model_or_path, (str, Path)):
        from liftcam.export.onnx_input import fix_input_dims, input_layout, input_shape_of

        model = _load_onnx(model_or_path)
        given = None if input_shape == (3, 224, 224) else input_shape
        shape = input_shape_of(model, given, input_layout(model, layout, given))
        fix_input_dims(model, shape)
        make_batch_dynamic(model)
        return [c.as_dict() for c in candidates(model, shape)]
    from liftcam.export.capture import torch_to_onnx
    from liftcam.export.outputs import ModelCall

    was_training = model_or_path.training
    model_or_path.eval()
    try:
        model, names, _, _ = torch_to_onnx(model_or_path, tuple(input_shape), None,
                                           ModelCall(model_or_path, output))
    finally:
        model_or_path.train(was_training)
    return [c.as_dict() for c in candidates(model, tuple(input_shape), names)
            if c.names]
