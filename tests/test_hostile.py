"""The hostile corpus (DESIGN.md §8): kills, hostile images and names, hostile bundles. Every
case is generated here, small on disk; every subprocess and loop is bounded."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest
from hostile import (
    DEMO,
    OVERLAY_PROBE,
    bundle_copy,
    cli,
    huge_png,
    image_folder,
    jsonl,
    manifest,
    nested_model,
    popen,
    rehash,
    replace_bytes,
    set_location,
    small_png,
    wait_for_lines,
    write_manifest,
)

import liftcam
from liftcam.engine import bundle as bundle_mod
from liftcam.engine import sessions
from liftcam.engine.errors import BundleError, InputError
from liftcam.engine.onnx_scan import MAX_DEPTH, scan_model
from liftcam.engine.pipeline import explain_files


def _refused(path, *fragments):
    with pytest.raises(BundleError) as info:
        liftcam.load_bundle(path)
    for f in fragments:
        assert f in str(info.value), str(info.value)
    return str(info.value)


# ----------------------------------------------------------------------------- 1: kills
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_explain_leaves_valid_results(tmp_path, sig):
    imgs = image_folder(tmp_path / "in", 150)
    out = tmp_path / "out"
    p = popen(cli("explain", DEMO, imgs, "-o", out, "-b", "1", "--maps", "npz",
                  "-m", "liftcam,gradcam,scorecam"))
    try:
        wait_for_lines(out / "results.jsonl", 4, p)
        p.send_signal(sig)
        p.wait(timeout=30)
    finally:
        p.kill()
    recs = jsonl(out / "results.jsonl")
    assert 4 <= len(recs) < 450 and all("file" in r for r in recs)
    if sig == signal.SIGTERM:                 # clean-ups ran: exit 143, maps.npz complete
        assert p.returncode == 143, p.stderr.read()
        with zipfile.ZipFile(out / "maps.npz") as z:
            assert len(z.namelist()) == sum("map" in r for r in recs)
        assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


def test_undecodable_file_name_round_trips(tmp_path):
    raw = os.fsencode(str(tmp_path)) + b"/\xff\xfe.png"
    small_png(os.fsdecode(raw))
    s = explain_files(DEMO, [tmp_path], tmp_path / "out", progress=False)
    assert s.explained == 1 and not s.failures
    (rec,) = jsonl(tmp_path / "out" / "results.jsonl")
    assert os.fsencode(rec["file"]) == raw
    assert (tmp_path / "out" / rec["overlay"]).is_file()


# ----------------------------------------------------------------------------- 2: images, names
def test_huge_images_refused_from_header_and_long_name(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    huge_png(d / "a9000.png", 9000, 9000)
    huge_png(d / "b13000.png", 13000, 13000)
    long = "c" * 236 + ".png"                      # 240 bytes: valid, but stem + suffix > 255
    small_png(d / long)
    assert (d / "a9000.png").stat().st_size < 100_000
    t = time.perf_counter()
    s = explain_files(DEMO, [d], tmp_path / "out", progress=False)
    assert time.perf_counter() - t < 10
    assert s.explained == 1
    assert sorted(os.path.basename(f) for f, _ in s.failures) == ["a9000.png", "b13000.png"]
    assert all("over the limit of 40,000,000" in why for _, why in s.failures)
    recs = jsonl(tmp_path / "out" / "results.jsonl")
    ok = [r for r in recs if "error" not in r]
    assert len(ok) == 1 and len(ok[0]["overlay"].encode()) <= 100 + len("_liftcam.png")


def test_overlay_memory_is_blocked_float32(tmp_path):
    r = subprocess.run([sys.executable, "-c", OVERLAY_PROBE], capture_output=True, text=True,
                       timeout=60)
    per_pixel = float(r.stdout.strip().splitlines()[-1])
    # uint8 copies + float32 map copies: ~14 bytes a pixel; full-size float copies were ~50
    assert per_pixel < 16, per_pixel


def test_extreme_aspect_ratio_with_resize_shorter():
    from PIL import Image

    from liftcam.engine.images import preprocess
    with pytest.raises(InputError, match="aspect ratio"):
        preprocess([Image.new("RGB", (1, 200_000))], {"resize_shorter": 8192,
                                                      "center_crop": [64, 64]})


# ----------------------------------------------------------------------------- 3: external data
def test_graph_not_named_onnx_is_scanned(tmp_path):
    b = bundle_copy(tmp_path)
    os.rename(b / "features.onnx", b / "features.model")
    m = manifest(b)
    m["graphs"]["features"] = "features.model"
    m["files"]["features.model"] = m["files"].pop("features.onnx")
    write_manifest(b, m)
    liftcam.load_bundle(b)                               # control: a renamed graph is fine
    (tmp_path / "outside.bin").write_bytes((b / "weights.bin").read_bytes())
    set_location(b, "features.model", "../outside.bin")
    _refused(b, "features.model", "outside the bundle")


def test_undecodable_location_refused(tmp_path):
    b = bundle_copy(tmp_path)
    replace_bytes(b, "head.onnx", b"weights.bin", b"\xffeights.bin")
    _refused(b, "head.onnx", "not valid UTF-8")


def test_location_spellings_one_file_hashed_once(tmp_path, monkeypatch):
    b = bundle_copy(tmp_path)
    set_location(b, "head.onnx", "./././weights.bin")
    calls = []
    real = bundle_mod.sha256_file
    monkeypatch.setattr(bundle_mod, "sha256_file", lambda p: calls.append(p) or real(p))
    liftcam.load_bundle(b)                              # the same file: accepted
    assert len(calls) == len(set(calls))
    os.symlink("weights.bin", b / "alias.bin")          # a second name of one file
    rehash(b, "weights.bin", "alias.bin")
    calls.clear()
    liftcam.load_bundle(b)
    assert sum(p.name in ("weights.bin", "alias.bin") for p in calls) == 1


def test_manifest_spellings_refused(tmp_path):
    b = bundle_copy(tmp_path)
    m = manifest(b)
    m["files"]["./weights.bin"] = m["files"]["weights.bin"]
    write_manifest(b, m)
    _refused(b, "'./weights.bin'", "one spelling")
    m["files"].pop("./weights.bin")
    for i in range(200):
        m["files"]["./" * (i + 1) + "weights.bin"] = m["files"]["weights.bin"]
    write_manifest(b, m)
    t = time.perf_counter()
    _refused(b, "files listed")
    assert time.perf_counter() - t < 1


def test_ours_refuses_before_onnxruntime_and_onnxruntime_refuses_too(tmp_path):
    import onnxruntime as ort

    b = bundle_copy(tmp_path)
    (tmp_path / "outside.bin").write_bytes((b / "weights.bin").read_bytes())
    set_location(b, "head.onnx", "../outside.bin")
    calls = []
    real = sessions.make_session
    sessions.make_session = lambda *a, **k: calls.append(a) or real(*a, **k)
    try:
        with pytest.raises(BundleError, match="outside the bundle"):
            liftcam.Explainer(b)
    finally:
        sessions.make_session = real
    assert not calls                                    # ORT never saw the graph
    with pytest.raises(Exception, match="(?i)external data"):     # ORT's own check (>= 1.24)
        ort.InferenceSession(str(b / "head.onnx"), providers=["CPUExecutionProvider"])


# ----------------------------------------------------------------------------- 4: manifest/graphs
@pytest.mark.parametrize("edit, field", [
    (lambda m: m.update(num_classes=10, labels=None), "num_classes"),
    (lambda m: m.update(num_classes=2, labels=None), "num_classes"),
    (lambda m: m.update(labels=["a"] * 7), "labels"),
    (lambda m: m["input"].update(shape=[None, 3, 32, 32]), "input.shape"),
    (lambda m: m["input"].update(name="pixels"), "input.name"),
    (lambda m: m["activation"].update(shape=[None, 32, 8, 8]), "activation.shape"),
    (lambda m: m["graphs"].update(head="features.onnx"), "head graph"),
    (lambda m: m["graphs"].update(bogus="head.onnx"), "unknown role"),
])
def test_manifest_contradicting_graphs(tmp_path, edit, field):
    b = bundle_copy(tmp_path)
    m = manifest(b)
    edit(m)
    write_manifest(b, m)
    _refused(b, field)


def test_symbolic_class_dimension_checked_at_run_time():
    bundle = liftcam.load_bundle(DEMO)
    bundle.manifest.update(num_classes=9, labels=None)   # head.onnx leaves it symbolic
    ex = liftcam.Explainer(bundle)
    with pytest.raises(BundleError, match="num_classes"):
        ex.head(np.zeros((1, *bundle.activation_shape), np.float32))


# ----------------------------------------------------------------------------- 5: unbounded work
@pytest.mark.parametrize("pre", [{"resize": [100_000, 100_000]},
                                 {"resize": None, "resize_shorter": 10 ** 9},
                                 {"resize": None, "center_crop": [9000, 64]}])
def test_preprocessing_sizes_capped(tmp_path, pre):
    b = bundle_copy(tmp_path)
    m = manifest(b)
    m["preprocessing"].update(pre)
    write_manifest(b, m)
    _refused(b, "8192")


def test_scanner_deep_nesting_bounded():
    data = nested_model(MAX_DEPTH // 4 - 1, payload_bytes=5 << 20)
    import tracemalloc
    tracemalloc.start()
    scan_model(data)                                   # within the limit: no copies
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20, peak
    with pytest.raises(ValueError, match="nested deeper"):
        scan_model(nested_model(90))
    with pytest.raises(ValueError, match="nested deeper"):
        scan_model(nested_model(5000))                 # no RecursionError either


def test_deep_graph_in_a_bundle_is_a_bundle_error(tmp_path):
    b = bundle_copy(tmp_path)
    (b / "head.onnx").write_bytes(nested_model(90))
    rehash(b, "head.onnx")
    _refused(b, "head.onnx", "nested deeper")


# ----------------------------------------------------------------------------- 6: symlink loops
def test_recursive_glob_over_a_symlink_loop(tmp_path):
    d = tmp_path / "d" / "sub"
    d.mkdir(parents=True)
    os.symlink("..", d / "up")
    os.symlink(".", d / "self")
    small_png(d / "a.png")
    code = ("import sys; from liftcam.engine.inputs import collect_inputs as c; "
            "print(len(c([sys.argv[1]])[0]))")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "d" / "**" / "*.png")],
                       capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == "1", r.stderr


# ----------------------------------------------------------------------------- 7: output hygiene
def _models():
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    return {"features": helper.make_model(g)}


def test_export_overwrite_keeps_foreign_old_folder_and_mode(tmp_path):
    from export.bundle_writer import write_bundle
    out = tmp_path / "m.liftcam"
    write_bundle(out, _models(), {})
    foreign = tmp_path / ".m.liftcam.old"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not liftcam's")
    write_bundle(out, _models(), {}, overwrite=True)
    assert (foreign / "keep.txt").read_text() == "not liftcam's"
    umask = os.umask(0)
    os.umask(umask)
    assert (out.stat().st_mode & 0o777) == 0o777 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.liftcam.old", "m.liftcam"]


SLOW_EXPORT = """
import signal, sys, time
sys.path.insert(0, sys.argv[2])
from liftcam.cli.common import raise_terminated
import export.bundle_writer as bw
from test_hostile import _models
signal.signal(signal.SIGTERM, raise_terminated)
real = bw.externalize
def slow(*a, **k):
    real(*a, **k)
    print("writing", flush=True)
    time.sleep(30)
bw.externalize = slow
bw.write_bundle(sys.argv[1], _models(), {})
"""


def test_sigterm_during_export_leaves_no_temp_folder(tmp_path):
    tests = os.path.dirname(__file__)
    p = subprocess.Popen([sys.executable, "-c", SLOW_EXPORT, str(tmp_path / "m.liftcam"),
                          tests], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "writing", p.stderr.read()
        assert any(f.name.startswith(".m.liftcam.") for f in tmp_path.iterdir())
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
    finally:
        p.kill()
    assert list(tmp_path.iterdir()) == []


def test_explain_refuses_an_earlier_run(tmp_path):
    small_png(tmp_path / "a.png")
    explain_files(DEMO, [tmp_path / "a.png"], tmp_path / "out", progress=False)
    with pytest.raises(InputError, match="earlier run"):
        explain_files(DEMO, [tmp_path / "a.png"], tmp_path / "out", progress=False)


# ----------------------------------------------------------------------------- 8: minor
def test_sessions_created_once_per_role_under_threads(monkeypatch):
    made = []
    real = sessions.make_session

    def slow(*a, **k):
        made.append(a[0])
        time.sleep(0.2)
        return real(*a, **k)

    monkeypatch.setattr(sessions, "make_session", slow)
    ex = liftcam.Explainer(DEMO)
    threads = [threading.Thread(target=ex.session, args=("features",)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(made) == 1


def test_onnxruntime_failures_are_bundle_errors(tmp_path):
    from onnx import TensorProto, helper
    b = bundle_copy(tmp_path)
    g = helper.make_graph([helper.make_node("NoSuchOp", ["activation"], ["logits"],
                                            domain="bogus.domain")], "g",
                          [helper.make_tensor_value_info("activation", TensorProto.FLOAT,
                                                         ["N", 64, 8, 8])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                                         ["N", 8])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                                helper.make_opsetid("bogus.domain", 1)])
    (b / "head.onnx").write_bytes(model.SerializeToString())
    rehash(b, "head.onnx")
    ex = liftcam.Explainer(b)
    with pytest.raises(BundleError, match="head.onnx: ONNX Runtime cannot load"):
        ex.head(np.zeros((1, 64, 8, 8), np.float32))


def test_control_characters_never_reach_the_terminal(tmp_path):
    bad = tmp_path / "x\x1b[31mred\x07.png"
    bad.write_bytes(b"not an image")
    small_png(tmp_path / "ok.png")
    r = subprocess.run(cli("explain", DEMO, tmp_path, "-o", tmp_path / "out", "-q"),
                       capture_output=True, timeout=120)
    assert r.returncode == 3, r.stderr
    assert b"\x1b" not in r.stderr and b"\x07" not in r.stderr
    assert b"\\x1b[31mred\\x07.png" in r.stderr


def test_npz_maps_are_written_as_the_run_goes(tmp_path):
    image_folder(tmp_path / "in", 4)
    sizes = []
    tmp = tmp_path / "out"

    def seen(res):
        sizes.append(sum(f.stat().st_size for f in tmp.iterdir() if f.name.endswith(".tmp")))

    explain_files(DEMO, [tmp_path / "in"], tmp, maps="npz", batch_size=1, progress=False,
                  on_result=seen)
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    with zipfile.ZipFile(tmp / "maps.npz") as z:
        assert len(z.namelist()) == 4


def test_explain_default_batch_is_bounded_and_results_identical():
    import inspect
    ex = liftcam.Explainer(DEMO)
    assert inspect.signature(ex.explain).parameters["batch_size"].default == 32
    x = np.random.default_rng(0).random((5, 3, 64, 64)).astype(np.float32)
    a = ex.explain(x, method="shap", n_samples=2, seed=3, batch_size=None, progress=False)
    b = ex.explain(x, method="shap", n_samples=2, seed=3, batch_size=2, progress=False)
    np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_array_equal(a.maps, b.maps)


def test_permission_denied_manifest_is_a_bundle_error(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads everything")
    b = bundle_copy(tmp_path)
    (b / "manifest.json").chmod(0)
    _refused(b, "cannot read")
    json.dumps({})
