"""liftcam export-triton: config.pbtxt parsed with Triton's own ModelConfig protobuf (from
tritonclient) and checked name by name, dtype by dtype, dim by dim against the ONNX graph; the
model file stands alone and equals the Explainer. No Triton server runs here."""
import shutil
import subprocess
import sys

import numpy as np
import pytest

from liftcam.engine import DEMO_DIR
from liftcam.engine.explainer import Explainer
from liftcam.engine.images import load_image, preprocess

onnx = pytest.importorskip("onnx")
mc = pytest.importorskip("tritonclient.grpc.model_config_pb2")
from google.protobuf import text_format  # noqa: E402  (after the skips)

VGG, RESNET = DEMO_DIR / "vgg_demo.liftcam", DEMO_DIR / "resnet_demo.liftcam"
IMAGES = sorted(DEMO_DIR.glob("*.png"))
ONNX_TO_TRITON = {onnx.TensorProto.FLOAT: mc.TYPE_FP32, onnx.TensorProto.INT64: mc.TYPE_INT64}


def _config(model_dir):
    return text_format.Parse((model_dir / "config.pbtxt").read_text(), mc.ModelConfig())


def _check_against_graph(model_dir, cfg):
    """Every config tensor against the graph: name, dtype, dims (batch dim left out)."""
    graph = onnx.load(str(model_dir / "1" / "model.onnx")).graph
    for ours, theirs in ((cfg.input, graph.input), (cfg.output, graph.output)):
        assert [t.name for t in ours] == [v.name for v in theirs]
        for t, v in zip(ours, theirs):
            tt = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
            assert dims[0] is None and tt.shape.dim[0].dim_param     # the symbolic batch dim
            assert t.data_type == ONNX_TO_TRITON[tt.elem_type], t.name
            if len(dims) == 1:                # per-sample scalar: [1] on the wire, () inside
                assert list(t.dims) == [1] and t.HasField("reshape")
                assert list(t.reshape.shape) == []
            else:
                assert list(t.dims) == dims[1:] and not t.HasField("reshape"), t.name


def test_config_matches_the_graph(tmp_path):
    from liftcam.integrations.triton import export_triton

    model_dir = export_triton(VGG, tmp_path / "repo", max_batch=16)
    assert model_dir == tmp_path / "repo" / "vgg_demo"
    cfg = _config(model_dir)
    assert cfg.name == "vgg_demo" and cfg.backend == "onnxruntime"
    assert cfg.max_batch_size == 16 and cfg.HasField("dynamic_batching")
    assert [(g.kind, g.count) for g in cfg.instance_group] == [(mc.ModelInstanceGroup.KIND_CPU,
                                                                 1)]
    assert [t.name for t in cfg.input] == ["image", "target"]
    assert [t.name for t in cfg.output] == ["logits", "weights", "map", "low_res"]
    assert list(cfg.input[0].dims) == [3, 64, 64] and list(cfg.output[0].dims) == [8]
    assert list(cfg.output[2].dims) == [64, 64]
    _check_against_graph(model_dir, cfg)
    labels = Explainer(VGG).bundle.labels
    assert cfg.output[0].label_filename == "labels.txt"
    assert (model_dir / "labels.txt").read_text().split() == labels
    compile((model_dir / "client_example.py").read_text(), "client_example.py", "exec")


def test_gpu_instances_and_gradcam(tmp_path):
    from liftcam.integrations.triton import export_triton

    model_dir = export_triton(RESNET, tmp_path, name="cams", method="gradcam", gpu=True,
                              instances=3)
    cfg = _config(model_dir)
    assert cfg.name == "cams"
    assert [(g.kind, g.count) for g in cfg.instance_group] == [(mc.ModelInstanceGroup.KIND_GPU,
                                                                 3)]
    _check_against_graph(model_dir, cfg)


def test_model_stands_alone_and_equals_the_explainer(tmp_path):
    import onnxruntime as ort
    from onnx.external_data_helper import uses_external_data

    from liftcam.integrations.triton import export_triton

    model_dir = export_triton(VGG, tmp_path / "repo")
    alone = tmp_path / "alone" / "model.onnx"         # the file by itself, nothing next to it
    alone.parent.mkdir()
    shutil.copy(model_dir / "1" / "model.onnx", alone)
    m = onnx.load(str(alone), load_external_data=False)
    assert not any(uses_external_data(t) for t in m.graph.initializer)
    ex = Explainer(VGG, path="multipliers")        # the split graphs, not this same file
    x = preprocess([load_image(p) for p in IMAGES], ex.bundle.manifest["preprocessing"])
    target = np.array([-1] * 4 + [3] * 4, np.int64)
    logits, weights, cam, low_res = ort.InferenceSession(str(alone)).run(
        None, {"image": x, "target": target})
    e = ex.explain(x[:4], method="liftcam", progress=False)
    assert np.allclose(logits[:4], e.logits, atol=1e-4)
    assert np.abs(cam[:4] - e.maps).max() < 1e-4
    assert np.abs(low_res[:4] - e.low_res).max() < 1e-4 * np.abs(e.low_res).max()
    e3 = ex.explain(x[4:], targets=3, method="liftcam", progress=False)
    assert np.abs(cam[4:] - e3.maps).max() < 1e-4


def test_cli_export_triton(tmp_path):
    from liftcam.cli import main

    args = ["export-triton", str(VGG), "-o", str(tmp_path / "repo"), "--max-batch", "4",
            "--instances", "2"]
    assert main(args) == 0
    assert main(args) == 1                            # exists: refused
    assert main(args + ["--overwrite", "--gpu"]) == 0
    cfg = _config(tmp_path / "repo" / "vgg_demo")
    assert cfg.max_batch_size == 4 and cfg.instance_group[0].count == 2
    assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["vgg_demo"]   # no temp


def test_without_onnx_a_clear_error(tmp_path):
    code = ("import sys; sys.modules['onnx'] = None; from liftcam.cli import main; "
            f"sys.exit(main(['export-triton', {str(VGG)!r}, '-o', {str(tmp_path)!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 1 and "pip install 'liftcam[triton]'" in r.stderr, r.stderr
