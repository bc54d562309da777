"""ONNX -> ORT format, and the required-operators config of an ONNX Runtime minimal build.

``onnxruntime.tools.convert_onnx_models_to_ort`` (optimisation style "Fixed": the graph is
optimised once for the CPU provider at conversion time and stored that way) over every variant
together, so one ``required_operators.config`` covers them all. Build ONNX Runtime with
``./build.sh --minimal_build --include_ops_by_config required_operators.config`` to get a
runtime that holds only the kernels these graphs use.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
from pathlib import Path

from liftcam.engine.errors import ExportError

CONFIG = "required_operators.config"


def to_ort(models: list, out_dir: Path) -> dict:
    """Convert ``models`` (paths to .onnx files, weights inlined) into ``out_dir``: returns
    {stem: path of the .ort} plus ``"config"``: the operators config."""
    import onnxruntime as ort
    from onnxruntime.tools.convert_onnx_models_to_ort import (
        OptimizationStyle,
        convert_onnx_models_to_ort,
    )

    ort.set_default_logger_severity(3)          # constant-folding notes on float16 graphs
    logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="liftcam-ort-") as tmp:
        src, dst = Path(tmp) / "onnx", Path(tmp) / "ort"
        src.mkdir()
        dst.mkdir()
        for m in models:
            shutil.copy(m, src / Path(m).name)
        log = io.StringIO()
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                convert_onnx_models_to_ort(src, dst, [OptimizationStyle.Fixed])
        except Exception as exc:            # the tool raises bare RuntimeErrors
            raise ExportError(f"ORT format conversion failed: {exc}; "
                              f"{log.getvalue()[-300:]}") from None
        out = {}
        for m in models:
            stem = Path(m).stem
            ort_file = dst / f"{stem}.ort"
            if not ort_file.is_file():
                raise ExportError(f"ORT format conversion wrote no {stem}.ort: "
                                  f"{log.getvalue()[-300:]}")
            out[stem] = out_dir / ort_file.name
            shutil.move(str(ort_file), out[stem])
        out["config"] = out_dir / CONFIG
        text = (dst / CONFIG).read_text().replace(f"{dst}{os.sep}", "")   # no temp paths
        out["config"].write_text(text)
    return out
