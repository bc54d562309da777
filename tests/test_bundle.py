"""Bundle loading: every corruption / tampering is refused with a clear BundleError, and the
protobuf scanner sees the same external-data locations as the ``onnx`` package."""
from __future__ import annotations

import collections
import hashlib
import json
import os
import shutil

import numpy as np
import pytest

import liftcam
from liftcam.engine.bundle import FORMAT_VERSION, MANIFEST, REQUIRED_KEYS, WEIGHTS
from liftcam.engine.errors import BundleError
from liftcam.engine.onnx_scan import external_data_locations

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.external_data_helper import _get_all_tensors, _get_initializer_tensors_from_graph  # noqa: E402


# ----------------------------------------------------------------------------- helpers
@pytest.fixture
def bundle(tiny_bundle, tmp_path):
    """A private, writable copy of the tiny bundle."""
    dst = tmp_path / "b.liftcam"
    shutil.copytree(tiny_bundle, dst)
    return dst


def _manifest(path):
    return json.loads((path / MANIFEST).read_text())


def _write_manifest(path, m):
    (path / MANIFEST).write_text(json.dumps(m))


def _rehash(path, name):
    """Record the current bytes of ``name`` in the manifest (what a careful tamperer does)."""
    m = _manifest(path)
    data = (path / name).read_bytes()
    m["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    _write_manifest(path, m)


def _refused(path, *fragments):
    with pytest.raises(BundleError) as info:
        liftcam.load_bundle(path)
    msg = str(info.value)
    for f in fragments:
        assert f in msg, f"{f!r} not in error message: {msg}"
    return msg


def _set_location(path, graph, location):
    """Point every external initializer of ``graph`` at ``location``, fix up the manifest hash."""
    m = onnx.load(str(path / graph), load_external_data=False)
    changed = 0
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
                changed += 1
    assert changed, f"{graph} has no external initializers to tamper with"
    (path / graph).write_bytes(m.SerializeToString())
    _rehash(path, graph)


# ----------------------------------------------------------------------------- the good bundle
def test_intact_bundle_loads(tiny_bundle):
    b = liftcam.load_bundle(tiny_bundle)
    m = b.manifest
    assert m["format_version"] == FORMAT_VERSION
    assert b.num_classes == 10 and b.input_shape == (3, 32, 32)
    assert b.activation_shape == (64, 16, 16)
    # every file in the directory (but the manifest) is listed and hash-checked
    assert set(m["files"]) == {p.name for p in tiny_bundle.iterdir()} - {MANIFEST}
    for name, entry in m["files"].items():
        data = (tiny_bundle / name).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["bytes"] == len(data)
    for role in m["graphs"]:
        assert b.graph(role).is_file()
    # the graphs share one weights file; at least the features' conv weights live there
    locs = {name: external_data_locations((tiny_bundle / name).read_bytes())
            for name in m["files"] if name.endswith(".onnx")}
    assert set().union(*map(set, locs.values())) == {WEIGHTS}
    assert locs["features.onnx"]
    with pytest.raises(BundleError, match="no 'nope' graph"):
        b.graph("nope")


def test_control_rewritten_onnx_with_fixed_hash_still_loads(bundle):
    """The tamper tests below re-serialize a graph and fix its hash; with an honest location
    that procedure yields a loadable bundle, so only the location can make them fail."""
    _set_location(bundle, "features.onnx", WEIGHTS)
    liftcam.load_bundle(bundle)


# ----------------------------------------------------------------------------- corruptions
def test_missing_directory(tmp_path):
    _refused(tmp_path / "nowhere.liftcam", "bundle directory not found", "nowhere.liftcam")


def test_a_file_is_not_a_bundle_directory(tmp_path):
    f = tmp_path / "file.liftcam"
    f.write_text("x")
    _refused(f, "bundle directory not found")


def test_missing_manifest(bundle):
    (bundle / MANIFEST).unlink()
    _refused(bundle, "not a liftcam bundle", MANIFEST)


@pytest.mark.parametrize("text", ["{not json", "", b"\xff\xfe{}"])
def test_manifest_not_json(bundle, text):
    p = bundle / MANIFEST
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    _refused(bundle, "malformed manifest", "not valid JSON")


def test_manifest_not_an_object(bundle):
    _write_manifest(bundle, [1, 2])
    _refused(bundle, "JSON object")


@pytest.mark.parametrize("key", sorted(set(REQUIRED_KEYS) - {"format_version"}))
def test_manifest_missing_key(bundle, key):
    m = _manifest(bundle)
    del m[key]
    _write_manifest(bundle, m)
    _refused(bundle, "malformed manifest", repr(key), "missing")


def test_manifest_missing_format_version(bundle):
    m = _manifest(bundle)
    del m["format_version"]
    _write_manifest(bundle, m)
    _refused(bundle, "'format_version'", "missing")


@pytest.mark.parametrize("key,value", [
    ("num_classes", "10"), ("num_classes", 10.0), ("num_classes", True),
    ("input", [None, 3, 32, 32]), ("files", []), ("graphs", "features.onnx"),
    ("preprocessing", None), ("target_layer", "4"), ("activation", 5)])
def test_manifest_wrong_types(bundle, key, value):
    m = _manifest(bundle)
    m[key] = value
    _write_manifest(bundle, m)
    _refused(bundle, "malformed manifest", repr(key))


@pytest.mark.parametrize("edit,fragment", [
    (lambda m: m["input"].update(shape=[None, 3, 32]), "input.shape"),
    (lambda m: m["input"].update(shape=[None, 3, "32", 32]), "input.shape"),
    (lambda m: m["activation"].update(shape=[None, 0, 16, 16]), "activation.shape"),
    (lambda m: m.update(num_classes=0), "num_classes"),
    (lambda m: m.update(labels=["a", "b"]), "labels"),
    (lambda m: m["graphs"].pop("head"), "'head'"),
    (lambda m: m["files"].pop("head.onnx"), "head.onnx"),
    (lambda m: m["files"]["head.onnx"].update(sha256="abc"), "sha256"),
    (lambda m: m["files"].update({"weights.bin": "deadbeef"}), "sha256"),
    (lambda m: m["graphs"].update(head=["head.onnx"]), "'head'"),
    (lambda m: m["graphs"].update(head=None), "'head'"),
])
def test_manifest_bad_fields(bundle, edit, fragment):
    m = _manifest(bundle)
    edit(m)
    _write_manifest(bundle, m)
    _refused(bundle, "malformed manifest", fragment)


@pytest.mark.parametrize("version", [0, 2, 99, "1", 1.5, None])
def test_unknown_format_version(bundle, version):
    m = _manifest(bundle)
    m["format_version"] = version
    _write_manifest(bundle, m)
    msg = _refused(bundle)
    assert "format version" in msg or "'format_version'" in msg
    if version in (0, 2, 99):
        assert f"unknown bundle format version {version!r}" in msg


@pytest.mark.parametrize("name", ["head.onnx", "weights.bin", "explain.onnx"])
def test_listed_file_missing(bundle, name):
    (bundle / name).unlink()
    _refused(bundle, name, "missing")


@pytest.mark.parametrize("name", ["features.onnx", "weights.bin"])
def test_changed_bytes_sha256_mismatch(bundle, name):
    p = bundle / name
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01            # one bit, same size
    p.write_bytes(bytes(data))
    _refused(bundle, "sha256 mismatch", name)
    # verify=False skips only the hashing
    liftcam.load_bundle(bundle, verify=False)


def test_external_data_leaving_the_bundle_relative(bundle):
    # the outside file exists and holds exactly the right bytes: only the path check can refuse
    shutil.copy(bundle / WEIGHTS, bundle.parent / "outside.bin")
    _set_location(bundle, "head.onnx" if _has_external(bundle, "head.onnx") else "features.onnx",
                  "../outside.bin")
    _refused(bundle, "outside the bundle", "../outside.bin")


def test_external_data_absolute_path(bundle):
    target = bundle.parent / "abs_weights.bin"
    shutil.copy(bundle / WEIGHTS, target)
    _set_location(bundle, "features.onnx", str(target.resolve()))
    _refused(bundle, "features.onnx", "relative file name", str(target.resolve()))


def test_external_data_in_a_subdirectory_must_be_listed(bundle):
    """A location inside the bundle but not listed in the manifest is not hash-checked."""
    (bundle / "sub").mkdir()
    shutil.copy(bundle / WEIGHTS, bundle / "sub" / WEIGHTS)
    _set_location(bundle, "features.onnx", f"sub/{WEIGHTS}")
    _refused(bundle, "features.onnx", f"sub/{WEIGHTS}", "does not list")


def test_external_data_through_a_symlink_out_of_the_bundle(bundle):
    outside = bundle.parent / "outside.bin"
    shutil.copy(bundle / WEIGHTS, outside)
    os.symlink(outside, bundle / "link.bin")
    _set_location(bundle, "features.onnx", "link.bin")
    _refused(bundle, "outside the bundle", "link.bin")


@pytest.mark.parametrize("name", ["../features.onnx", "sub/../../features.onnx"])
def test_manifest_file_entry_leaving_the_bundle(bundle, name):
    shutil.copy(bundle / "features.onnx", bundle.parent / "features.onnx")
    m = _manifest(bundle)
    m["files"][name] = dict(m["files"]["features.onnx"])
    _write_manifest(bundle, m)
    _refused(bundle, "outside the bundle", name)


def test_manifest_file_entry_absolute(bundle):
    m = _manifest(bundle)
    name = str((bundle / "features.onnx").resolve())
    m["files"][name] = dict(m["files"]["features.onnx"])
    _write_manifest(bundle, m)
    _refused(bundle, "relative file name", name)


def test_graph_that_is_not_onnx(bundle):
    (bundle / "head.onnx").write_bytes(b"\x0f\xff\xff")
    _rehash(bundle, "head.onnx")
    _refused(bundle, "head.onnx", "not a readable ONNX file")


def _has_external(bundle, graph):
    return bool(external_data_locations((bundle / graph).read_bytes()))


# ----------------------------------------------------------------------------- onnx_scan
def _tensor(rng, name):
    shape = tuple(int(d) for d in rng.integers(1, 4, size=rng.integers(1, 3)))
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)


def _maybe_external(rng, t, counter):
    if rng.random() < 0.6:
        counter[0] += 1
        loc = rng.choice(["w.bin", "sub/x.bin", "../evil.bin", "/abs/p.bin", f"t{counter[0]}.bin",
                          "ünïcode.bin"])
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        keys = [("location", str(loc)), ("offset", str(int(rng.integers(0, 4096)))),
                ("length", "4")]
        if rng.random() < 0.5:
            keys.reverse()              # "location" need not be the first entry
        for k, v in keys:
            e = t.external_data.add()
            e.key, e.value = k, v
    return t


def _random_graph(rng, depth, counter, name="g"):
    inits = [_maybe_external(rng, _tensor(rng, f"{name}_init{i}"), counter)
             for i in range(int(rng.integers(0, 5)))]
    nodes = []
    for i in range(int(rng.integers(1, 5))):
        kind = rng.integers(0, 4 if depth < 2 else 3)
        if kind == 0:       # Constant with a tensor attribute
            nodes.append(helper.make_node(
                "Constant", [], [f"{name}_c{i}"],
                value=_maybe_external(rng, _tensor(rng, f"{name}_cv{i}"), counter)))
        elif kind == 1:     # a node with a list-of-tensors attribute (custom domain)
            n = helper.make_node("Foo", [], [f"{name}_f{i}"], domain="test")
            a = n.attribute.add()
            a.name, a.type = "ts", onnx.AttributeProto.TENSORS
            for j in range(int(rng.integers(1, 3))):
                a.tensors.append(_maybe_external(rng, _tensor(rng, f"{name}_ft{i}_{j}"), counter))
            nodes.append(n)
        elif kind == 2:
            nodes.append(helper.make_node("Relu", [f"{name}_x"], [f"{name}_r{i}"]))
        else:               # subgraphs: If (g attributes) and a graphs-list attribute
            sub_then = _random_graph(rng, depth + 1, counter, f"{name}_then{i}")
            sub_else = _random_graph(rng, depth + 1, counter, f"{name}_else{i}")
            nodes.append(helper.make_node("If", [f"{name}_cond"], [f"{name}_if{i}"],
                                          then_branch=sub_then, else_branch=sub_else))
    x = helper.make_tensor_value_info(f"{name}_x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)
    return helper.make_graph(nodes, name, [x], [y], initializer=inits)


def _random_model(seed):
    rng = np.random.default_rng(seed)
    counter = [0]
    model = helper.make_model(_random_graph(rng, 0, counter), producer_name="t")
    for i in range(int(rng.integers(0, 3))):    # local functions with constant tensors
        sub = _random_graph(rng, 1, counter, f"fn{i}")
        model.functions.append(helper.make_function(
            "local", f"fn{i}", ["x"], [sub.node[-1].output[0]], list(sub.node),
            [helper.make_opsetid("", 17)]))
    return model


@pytest.mark.parametrize("seed", range(40))
def test_external_data_locations_matches_onnx(seed, tmp_path):
    model = _random_model(seed)
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    loaded = onnx.load(str(path), load_external_data=False)
    tensors = list(_get_all_tensors(loaded))
    # onnx's walker skips the initializers of subgraphs inside local functions; ONNX Runtime
    # loads them, so the scanner must list them too (onnx's own helper, on those subgraphs)
    for fn in loaded.functions:
        for node in fn.node:
            for a in node.attribute:
                for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    tensors += _get_initializer_tensors_from_graph(g)
    expected = [e.value for t in tensors for e in t.external_data if e.key == "location"]
    got = external_data_locations(path.read_bytes())
    assert collections.Counter(got) == collections.Counter(expected)


def test_external_data_locations_finds_something():
    """The random models above do exercise external data (guards against a vacuous test)."""
    total = sum(len(external_data_locations(_random_model(s).SerializeToString()))
                for s in range(40))
    assert total > 40


def test_external_data_locations_sparse_tensors():
    """Sparse initializers and sparse attribute values (``onnx`` does not list them, ONNX
    Runtime reads their external data) are scanned too."""
    def sparse(loc):
        values = numpy_helper.from_array(np.ones(2, np.float32), "sv")
        values.ClearField("raw_data")
        values.data_location = TensorProto.EXTERNAL
        e = values.external_data.add()
        e.key, e.value = "location", loc
        indices = numpy_helper.from_array(np.array([0, 3], np.int64), "si")
        return helper.make_sparse_tensor(values, indices, [4])

    node = helper.make_node("Constant", [], ["c"], sparse_value=sparse("../attr.bin"))
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info(
        "c", TensorProto.FLOAT, [4])])
    graph.sparse_initializer.append(sparse("../init.bin"))
    model = helper.make_model(graph)
    assert sorted(external_data_locations(model.SerializeToString())) == ["../attr.bin",
                                                                          "../init.bin"]


def test_external_data_locations_rejects_garbage():
    data = helper.make_model(helper.make_graph([], "g", [], [])).SerializeToString()
    with pytest.raises(ValueError):
        external_data_locations(b"")                # no graph
    with pytest.raises(ValueError):
        external_data_locations(b"\x3a\xff")        # field 7, truncated length
    model = _random_model(3).SerializeToString()
    with pytest.raises(ValueError):
        external_data_locations(model[:-3])
    assert external_data_locations(data) == []
