"""liftcam.integrations.ray on a local Ray (ray.init(num_cpus=2), one per module): rows equal
the Explainer's on the same images, bad images become error rows, bytes datasets, the CLI."""
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from liftcam.engine import DEMO_DIR
from liftcam.engine.explainer import Explainer
from liftcam.engine.images import load_image, preprocess

VGG, RESNET = DEMO_DIR / "vgg_demo.liftcam", DEMO_DIR / "resnet_demo.liftcam"
IMAGES = sorted(DEMO_DIR.glob("*.png"))


@pytest.fixture(scope="module")
def ray():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture
def bad_files(tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(IMAGES[0].read_bytes()[:200])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    return {"corrupt": corrupt, "empty": empty, "missing": tmp_path / "missing.png"}


def _direct(bundle, paths, method, target=None):
    """The same images through Explainer.explain directly."""
    ex = Explainer(bundle)
    x = preprocess([load_image(p) for p in paths], ex.bundle.manifest["preprocessing"])
    e = ex.explain(x, targets=target, method=method, progress=False)
    return {str(p): (e, j) for j, p in enumerate(paths)}, ex.bundle.labels


def _check_equal(rows, direct, labels, method):
    assert len(rows) == len(direct)
    for r in rows:
        e, j = direct[r["path"]]
        t = int(e.targets[j])
        assert r["error"] is None and r["method"] == method
        assert r["predicted"] == int(np.argmax(e.logits[j])) and r["target"] == t
        assert r["target_label"] == labels[t]
        assert r["probability"] == np.float32(e.probabilities()[j, t])
        assert r["map"].dtype == np.float16 and r["map"].shape == e.maps[j].shape
        assert np.abs(r["map"].astype(np.float32) - e.maps[j]).max() <= 1e-3


def test_rows_equal_the_explainer(ray):
    from liftcam.integrations.ray import COLUMNS, explain_images

    ds = explain_images([str(p) for p in IMAGES], VGG, batch_size=3, concurrency=2)
    rows = ds.take_all()
    assert set(rows[0]) == set(COLUMNS)
    direct, labels = _direct(VGG, IMAGES, "liftcam")
    _check_equal(rows, direct, labels, "liftcam")


def test_methods_and_target_label_on_resnet(ray):
    from liftcam.integrations.ray import explain_images

    rows = explain_images(str(DEMO_DIR / "*.png"), RESNET, method=["liftcam", "gradcam"],
                          target="star", batch_size=4, concurrency=1).take_all()
    for method in ("liftcam", "gradcam"):
        direct, labels = _direct(RESNET, IMAGES, method, target=labels_index(RESNET, "star"))
        _check_equal([r for r in rows if r["method"] == method], direct, labels, method)


def labels_index(bundle, label):
    return Explainer(bundle).bundle.labels.index(label)


def test_bad_images_become_error_rows(ray, bad_files, tmp_path):
    from liftcam.integrations.ray import explain_images

    odd = tmp_path / os.fsdecode(b"odd\xffname.png")      # not UTF-8: path shown with U+FFFD
    odd.write_bytes(IMAGES[2].read_bytes())
    paths = [str(IMAGES[0]), *map(str, bad_files.values()), str(IMAGES[1]), str(odd)]
    rows = {r["path"]: r for r in explain_images(paths, VGG, batch_size=2).take_all()}
    assert len(rows) == 6
    assert rows[str(tmp_path / "odd\ufffdname.png")]["target_label"] == "diamond"
    why = {"corrupt": "truncated|corrupt", "empty": "empty", "missing": "does not exist"}
    for kind, path in bad_files.items():
        r = rows[str(path)]
        assert r["error"] and any(w in r["error"] for w in why[kind].split("|")), r["error"]
        assert all(r[c] is None for c in ("predicted", "target", "target_label", "probability",
                                          "map", "method"))
    for p in IMAGES[:2]:
        assert rows[str(p)]["error"] is None and rows[str(p)]["map"].shape == (64, 64)


def test_dataset_of_image_bytes(ray):
    from liftcam.integrations.ray import explain_images

    items = [{"path": str(p), "image": p.read_bytes()} for p in IMAGES[:4]]
    items.append({"path": "broken", "image": b"\x89PNG not really"})
    rows = explain_images(ray.data.from_items(items), VGG, batch_size=2).take_all()
    bad = [r for r in rows if r["error"]]
    assert [r["path"] for r in bad] == ["broken"] and "'broken'" in bad[0]["error"]
    direct, labels = _direct(VGG, IMAGES[:4], "liftcam")
    _check_equal([r for r in rows if not r["error"]], direct, labels, "liftcam")


def test_cli_ray_writes_parquet(ray, bad_files, tmp_path):
    import pyarrow.parquet as pq

    from liftcam.cli import main

    out = tmp_path / "out"
    args = ["explain", str(VGG), str(DEMO_DIR), str(bad_files["empty"]), "-o", str(out),
            "--ray", "--ray-actors", "2", "-b", "4", "-q"]
    assert main(args) == 3                       # some inputs failed: exit status 3
    t = pq.read_table(out)
    assert t.num_rows == len(IMAGES) + 1
    errors = [e for e in t.column("error").to_pylist() if e]
    assert len(errors) == 1 and "empty" in errors[0]
    assert main(args) == 1                       # refuses a non-empty folder ...
    assert main(args + ["--overwrite"]) == 3     # ... unless --overwrite
    assert pq.read_table(out).num_rows == len(IMAGES) + 1


def test_without_ray_a_clear_error():
    code = ("import sys; sys.modules['ray'] = None; sys.modules['ray.data'] = None; "
            "from liftcam.cli import main; "
            f"sys.exit(main(['explain', {str(VGG)!r}, {str(IMAGES[0])!r}, '-o', 'o', '--ray']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 1, r.stderr
    assert "pip install 'liftcam[ray]'" in r.stderr and r.stderr.count("\n") == 1
