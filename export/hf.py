"""transformers image-processor settings -> liftcam's preprocessing keys.

A transformers CNN classifier comes with an image processor (``AutoImageProcessor``;
``preprocessor_config.json``). :func:`preprocessing_from_hf` translates its config dict (or the
processor itself) into the keys of :func:`liftcam.engine.images.preprocess`, so that
``liftcam explain`` on image files feeds the model what its own pipeline would:

=========================================  ================================================
transformers                               liftcam
=========================================  ================================================
``size {"shortest_edge": S}`` + ConvNeXt   ``resize_shorter int(S / crop_pct)`` +
``crop_pct`` (S < 384)                     ``center_crop [S, S]``; S ≥ 384: ``resize [S, S]``
``size {"shortest_edge": S}``              ``resize_shorter S``
``size {"height": H, "width": W}``         ``resize [H, W]``
``do_center_crop`` + ``crop_size``         ``center_crop [h, w]``
``resample`` (PIL int 0..5)                ``resize_mode`` (nearest, lanczos, bilinear, ...)
``do_rescale`` + ``rescale_factor`` r      ``scale 1 / r`` (1 without do_rescale)
``rescale_offset`` (EfficientNet)          1 added to ``mean``
``do_normalize`` + ``image_mean/std``      ``mean``, ``std`` (0 and 1 without do_normalize)
``include_top`` (EfficientNet)             ``std`` multiplied by ``image_std`` once more
=========================================  ================================================

Known difference: transformers crops at ``top = (h - H) // 2`` (floor), liftcam (as
torchvision's ``CenterCrop``) at ``round((h - H) / 2)``: when ``h - H`` is 3, 7, 11, ... the
crop window sits one pixel lower (or to the right) in liftcam. Otherwise, against the PIL
backend (``*ImageProcessorPil``) the pixel values agree to float rounding (< 1e-5);
against the default torchvision backend, whose antialiased resize differs from Pillow's by
a grey level here and there, to within 2/255 / std (tests/test_hf.py measures both).
"""
from __future__ import annotations

from numbers import Real

from liftcam.engine.errors import ExportError

#: PIL's resampling filter numbers (PIL.Image.Resampling) -> liftcam's resize_mode
PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
#: keys that only a transformers image-processor config has (none is a liftcam key)
HF_KEYS = {"image_mean", "image_std", "do_normalize", "do_rescale", "rescale_factor", "size",
           "crop_size", "do_resize", "do_center_crop", "crop_pct", "resample",
           "image_processor_type"}


def is_hf_config(preprocessing) -> bool:
    """True for a transformers image processor or its config dict."""
    if hasattr(preprocessing, "to_dict") and not isinstance(preprocessing, dict):
        return True
    return isinstance(preprocessing, dict) and bool(HF_KEYS & set(preprocessing))


def _size(value, what):
    """A transformers size entry -> ("shortest", S) or ("hw", (H, W))."""
    if isinstance(value, Real) and not isinstance(value, bool):
        return "hw", (int(value), int(value))
    if not isinstance(value, dict):
        raise ExportError(f"preprocessing {what} must be a dict or int, got {value!r}")
    if value.get("height") is not None and value.get("width") is not None:
        return "hw", (int(value["height"]), int(value["width"]))
    if value.get("longest_edge") is not None:
        raise ExportError(f"preprocessing {what} {value!r}: longest_edge (aspect-preserving "
                          "resize with a cap) has no liftcam equivalent; give height/width")
    if value.get("shortest_edge") is not None:
        return "shortest", int(value["shortest_edge"])
    raise ExportError(f"preprocessing {what} {value!r} has neither shortest_edge nor "
                      "height/width")


def _resample(value) -> str:
    if isinstance(value, str):
        name = value.lower().rsplit(".", 1)[-1]
        if name in PIL_RESAMPLE.values():
            return name
    try:
        return PIL_RESAMPLE[int(value)]
    except (KeyError, TypeError, ValueError):
        raise ExportError(f"preprocessing resample {value!r} is not a PIL filter (0..5)") from None


def _triple(value, what):
    if isinstance(value, Real):
        return [float(value)] * 3
    vals = [float(v) for v in value]
    if len(vals) != 3:
        raise ExportError(f"preprocessing {what} must have 3 values (RGB), got {value!r}")
    return vals


def preprocessing_from_hf(config) -> dict:
    """A transformers image processor's config dict (or the processor) -> liftcam
    preprocessing keys (``resize``/``resize_shorter``, ``center_crop``, ``resize_mode``,
    ``scale``, ``mean``, ``std``; ``channel_order`` RGB). See the module docstring."""
    cfg = config.to_dict() if hasattr(config, "to_dict") and not isinstance(config, dict) \
        else dict(config)
    kind = str(cfg.get("image_processor_type") or "")
    out = {"resize": None, "resize_shorter": None, "center_crop": None,
           "channel_order": "RGB"}
    if cfg.get("do_resize", True) and cfg.get("size") is not None:
        how, size = _size(cfg["size"], "size")
        crop_pct = cfg.get("crop_pct")
        if how == "shortest" and kind.startswith("ConvNext") and crop_pct:
            if size < 384:
                out["resize_shorter"] = int(size / crop_pct)
                out["center_crop"] = [size, size]
            else:
                out["resize"] = [size, size]
        elif how == "shortest":
            out["resize_shorter"] = size
        else:
            out["resize"] = list(size)
        out["resize_mode"] = _resample(cfg.get("resample", 2))
    if cfg.get("do_center_crop") and cfg.get("crop_size") is not None:
        how, crop = _size(cfg["crop_size"], "crop_size")
        if how != "hw":
            raise ExportError(f"preprocessing crop_size {cfg['crop_size']!r}: need height/width")
        out["center_crop"] = list(crop)
    if out["resize_shorter"] is not None and out["center_crop"] is None:
        raise ExportError("preprocessing resizes the shorter side without a centre crop: the "
                          "model's input size would depend on the image; liftcam needs a fixed "
                          "size (give crop_size with do_center_crop, or size height/width)")
    rescale = cfg.get("do_rescale", True)
    out["scale"] = 1.0 / float(cfg.get("rescale_factor", 1 / 255)) if rescale else 1.0
    offset = 1.0 if rescale and cfg.get("rescale_offset") else 0.0
    normalize = cfg.get("do_normalize", True)
    mean = _triple(cfg.get("image_mean", 0.0), "image_mean") if normalize else [0.0] * 3
    std = _triple(cfg.get("image_std", 1.0), "image_std")
    out["mean"] = [offset + m for m in mean]
    out["std"] = list(std) if normalize else [1.0] * 3
    if cfg.get("include_top"):      # EfficientNet: normalised once more by std alone
        out["std"] = [a * b for a, b in zip(out["std"], std)]
    return out


def final_hw(preprocessing):
    """The (H, W) a liftcam preprocessing dict produces, or None when it does not fix one."""
    if preprocessing.get("center_crop") is not None:
        return tuple(preprocessing["center_crop"])
    if preprocessing.get("resize") is not None:
        return tuple(preprocessing["resize"])
    return None
