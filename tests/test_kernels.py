"""kernels/: liftcam.cu compiles (nvcc, NVRTC), the launcher validates before launching and
imports without cuda-python; on a GPU, the kernels equal the numpy specification."""
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from kernel_vectors import TAIL_CASES, make_constant_case, make_tail_inputs

from liftcam.engine import tail
from liftcam.engine.errors import InputError
from liftcam.kernels import compiler, plan
from liftcam.kernels.backends import gpu_available
from liftcam.kernels.launch import get_launcher, tail_numpy, tail_ortvalues

NVCC = shutil.which("nvcc") or ("/usr/local/bin/nvcc" if os.path.exists("/usr/local/bin/nvcc")
                                else None)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_GPU_OK, _GPU_WHY = gpu_available()
needs_gpu = pytest.mark.skipif(not _GPU_OK, reason=f"no CUDA GPU: {_GPU_WHY}")


def _have_nvrtc():
    try:
        compiler.load_nvrtc()
        return True
    except Exception:
        return False


# ----------------------------------------------------------------------------- compilation
@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_nvcc_ptx_warnings_as_errors(arch, tmp_path):
    out = tmp_path / f"liftcam_{arch}.ptx"
    r = subprocess.run([NVCC, "-ptx", f"-arch={arch}", "-Werror", "all-warnings",
                        "-o", str(out), compiler.SOURCE_PATH], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ptx = out.read_text()
    for name in compiler.KERNEL_NAMES:
        assert f".entry {name}(" in ptx, name  # extern "C": unmangled


@pytest.mark.skipif(NVCC is None or shutil.which("g++") is None, reason="nvcc/g++ missing")
def test_nvcc_host_launchers_compile(tmp_path):
    out = tmp_path / "liftcam.o"
    r = subprocess.run([NVCC, "-c", "-arch=sm_80", "-Werror", "all-warnings",
                        "-Xcompiler", "-Wall,-Wextra,-Werror", "-o", str(out),
                        compiler.SOURCE_PATH], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(not _have_nvrtc(), reason="cuda-python (cuda.bindings.nvrtc) not installed")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_nvrtc_compiles_same_file(arch):
    ptx, log = compiler.compile_source(arch, "ptx", return_log=True)
    assert "warning" not in log.lower(), log
    text = ptx.decode(errors="replace")
    for name in compiler.KERNEL_NAMES:
        assert f".entry {name}(" in text
    assert "liftcam_tail_multipliers" not in text  # host part is hidden from NVRTC
    cubin = compiler.compile_source(arch, "cubin")
    assert len(cubin) > 1000
    # NVRTC's one-byte empty log must not have been written into CPython's shared b" "
    assert b" " == bytes([32]) and b"\x00" != b" "


def test_launcher_constants_match_cuda_source():
    src = compiler.kernel_source()
    defs = dict(re.findall(r"#define (LIFTCAM_\w+) (\S+)", src))
    assert int(defs["LIFTCAM_BLOCK"]) == plan.BLOCK
    assert int(defs["LIFTCAM_MAX_CHUNK"]) == plan.MAX_CHUNK
    assert int(defs["LIFTCAM_MIN_CHUNK"]) == plan.MIN_CHUNK
    assert int(defs["LIFTCAM_TARGET_BLOCKS"]) == plan.TARGET_BLOCKS
    assert int(defs["LIFTCAM_PIX_PER_BLOCK"]) == plan.PIX_PER_BLOCK
    assert int(defs["LIFTCAM_MAX_PIX_BLOCKS"]) == plan.MAX_PIX_BLOCKS
    assert int(defs["LIFTCAM_MAX_GRID_Y"]) == plan.MAX_GRID_Y
    assert int(defs["LIFTCAM_LOWRES_MAX_BLOCKS"]) == plan.LOWRES_MAX_BLOCKS


# ----------------------------------------------------------------------------- no cuda-python
def test_imports_without_cuda_python():
    code = r"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "cuda" or name.startswith("cuda.") or name.startswith("pycuda"):
            raise ImportError("blocked " + name)
        return None
sys.meta_path.insert(0, Block())
import liftcam.kernels
assert not [m for m in sys.modules if m.startswith("liftcam.kernels.")], "not lazy"
from liftcam.kernels import backends, compiler, launch, plan  # noqa: F401
from liftcam.kernels import (KernelUnavailableError, get_launcher, gpu_available,
                             tail_ortvalues)  # noqa: F401  (the names the engine uses)
assert gpu_available()[0] is False
for backend in ("cuda-python", "pycuda"):
    try:
        get_launcher(backend)
    except KernelUnavailableError as e:
        assert "pip install" in str(e), e
    else:
        raise SystemExit("expected KernelUnavailableError")
try:
    liftcam.kernels.compile_source("sm_80")
except KernelUnavailableError as e:
    assert "cuda-python" in str(e)
print("OK")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and r.stdout.strip() == "OK", r.stderr


# ----------------------------------------------------------------------------- validation
def test_tail_array_validation():
    A = np.zeros((2, 3, 4, 5), np.float32)
    M = np.zeros_like(A)
    with pytest.raises(InputError, match="dtype float32"):
        tail_numpy(A.astype(np.float64), M, size=8)
    with pytest.raises(InputError, match="C-contiguous"):
        tail_numpy(np.asfortranarray(A), M, size=8)
    with pytest.raises(InputError, match=r"M: expected shape \(2, 3, 4, 5\)"):
        tail_numpy(A, np.zeros((2, 2, 4, 5), np.float32), size=8)
    with pytest.raises(InputError, match="exactly one of M"):
        tail_numpy(A, M, weights=np.zeros((2, 3), np.float32), size=8)
    with pytest.raises(InputError, match="exactly one of M"):
        tail_numpy(A, size=8)
    with pytest.raises(InputError, match=r"weights: expected shape \(2, 3\)"):
        tail_numpy(A, weights=np.zeros((3, 2), np.float32), size=8)
    with pytest.raises(InputError, match="4 dimensions"):
        tail_numpy(A[0], M[0], size=8)
    with pytest.raises(InputError, match="empty"):
        tail_numpy(A[:0], M[:0], size=8)
    with pytest.raises(InputError, match="> 0"):
        tail_numpy(A, M, size=(0, 7))
    with pytest.raises(InputError, match="size"):
        tail_numpy(A, M)
    with pytest.raises(InputError, match="numpy array"):
        tail_numpy(A.tolist(), M, size=8)
    with pytest.raises(InputError, match="backend"):
        get_launcher("opencl")
    with pytest.raises(InputError, match="> 0"):
        plan.validate_tail_dims(1, 0, 7, 7, 224, 224)
    with pytest.raises(InputError, match="32-bit"):
        plan.validate_tail_dims(1, 1, 2**31, 1, 2, 2)


class FakeOrtValue:
    def __init__(self, shape, device="cuda", dtype="tensor(float)", ptr=4096):
        self._s, self._d, self._t, self._p = shape, device, dtype, ptr

    def shape(self):
        return list(self._s)

    def device_name(self):
        return self._d

    def data_type(self):
        return self._t

    def data_ptr(self):
        return self._p


def test_ortvalue_validation():
    A = FakeOrtValue((2, 8, 7, 7))
    M = FakeOrtValue((2, 8, 7, 7))
    maps = FakeOrtValue((2, 224, 224))
    d = plan.validate_ortvalues(A, M, maps, alpha=FakeOrtValue((2, 8)),
                             low_res=FakeOrtValue((2, 7, 7)))
    assert d == plan.TailDims(2, 8, 7, 7, 224, 224)
    assert plan.validate_ortvalues(A, None, maps, weights=FakeOrtValue((2, 8))).K == 8
    with pytest.raises(InputError, match="lives on 'cpu'"):
        tail_ortvalues(FakeOrtValue((2, 8, 7, 7), device="cpu"), M, maps)
    with pytest.raises(InputError, match=r"tensor\(float\)"):
        tail_ortvalues(A, FakeOrtValue((2, 8, 7, 7), dtype="tensor(float16)"), maps)
    with pytest.raises(InputError, match="batch"):
        tail_ortvalues(A, M, FakeOrtValue((3, 224, 224)))
    with pytest.raises(InputError, match="M: expected shape"):
        tail_ortvalues(A, FakeOrtValue((2, 8, 7, 6)), maps)
    with pytest.raises(InputError, match="alpha: expected shape"):
        tail_ortvalues(A, M, maps, alpha=FakeOrtValue((2, 7)))
    with pytest.raises(InputError, match="alpha: an output only when M"):
        tail_ortvalues(A, None, maps, weights=FakeOrtValue((2, 8)), alpha=FakeOrtValue((2, 8)))
    with pytest.raises(InputError, match="OrtValue"):
        tail_ortvalues(np.zeros((2, 8, 7, 7), np.float32), M, maps)


def test_real_cpu_ortvalue_is_refused():
    ort = pytest.importorskip("onnxruntime")
    A = ort.OrtValue.ortvalue_from_numpy(np.zeros((1, 2, 3, 3), np.float32))
    maps = ort.OrtValue.ortvalue_from_numpy(np.zeros((1, 5, 5), np.float32))
    with pytest.raises(InputError, match="device 'cuda'"):
        tail_ortvalues(A, A, maps)


def test_plan_covers_everything():
    for N, K, h, w, H, W in [(1, 2048, 7, 7, 224, 224), (256, 2048, 7, 7, 224, 224),
                             (256, 512, 14, 14, 224, 224), (1, 1, 1, 1, 1, 1),
                             (100000, 3, 2, 2, 3, 3), (3, 100, 1000, 1000, 5000, 5000)]:
        d = plan.validate_tail_dims(N, K, h, w, H, W)
        l1, l2, l3, l4 = plan.plan_tail(d)
        c = plan.chunk_channels(N, K)
        assert plan.MIN_CHUNK <= c <= plan.MAX_CHUNK and l1.grid[0] * c >= K > (l1.grid[0] - 1) * c
        for ln in (l1, l2, l3, l4):
            assert 1 <= ln.grid[0] <= 2**31 - 1 and 1 <= ln.grid[1] <= 65535
            assert ln.block == (plan.BLOCK, 1, 1)
        assert l3 == plan.Launch("liftcam_upsample_minmax", l4.grid, l4.block)
        assert plan.workspace_bytes(N, K, h, w) >= 16 * N + 4 * N * l1.grid[0] * h * w


# ----------------------------------------------------------------------------- on a GPU
@needs_gpu
@pytest.mark.parametrize("case", TAIL_CASES, ids=lambda c: c.id)
def test_kernel_tail_multipliers_vs_numpy(case):
    d = make_tail_inputs(case)
    alpha, low, maps = tail_numpy(d["A"], d["M"], size=(case.H, case.W), poison_outputs=True)
    ref_alpha = tail.liftcam_coefficients(d["A"], d["M"])
    scale = np.abs(d["A"] * d["M"]).sum(axis=(2, 3))
    assert np.all(np.abs(alpha - ref_alpha) <= 1e-5 * scale + 1e-6)
    ref_low, ref_maps = tail.finish(tail.weighted_sum(d["A"], ref_alpha), (case.H, case.W))
    S_scale = np.einsum("nk,nkij->nij", np.abs(ref_alpha), d["A"])
    assert np.all(np.abs(low - ref_low) <= 1e-5 * S_scale + 1e-6)
    assert not np.isnan(maps).any() and not np.isnan(low).any() and not np.isnan(alpha).any()
    np.testing.assert_allclose(maps, ref_maps, rtol=0, atol=1e-5)


@needs_gpu
@pytest.mark.parametrize("case", TAIL_CASES, ids=lambda c: c.id)
def test_kernel_tail_weights_vs_numpy(case):
    d = make_tail_inputs(case)
    _, low, maps = tail_numpy(d["A"], weights=d["weights"], size=(case.H, case.W),
                                poison_outputs=True)
    ref_low, ref_maps = tail.finish(tail.weighted_sum(d["A"], d["weights"]), (case.H, case.W))
    S_scale = np.einsum("nk,nkij->nij", np.abs(d["weights"]), d["A"])
    assert np.all(np.abs(low - ref_low) <= 1e-5 * S_scale + 1e-6)
    assert not np.isnan(maps).any()
    np.testing.assert_allclose(maps, ref_maps, rtol=0, atol=1e-5)


@needs_gpu
def test_kernel_constant_map_gives_zeros():
    d = make_constant_case()
    _, low, maps = tail_numpy(d["A"], d["M"], size=(17, 19), poison_outputs=True)
    assert np.all(low == 0) and np.all(maps == 0)
    _, low, maps = tail_numpy(d["A"][:, :1, :1, :1].copy(), weights=np.ones((2, 1), np.float32),
                                size=(9, 9), poison_outputs=True)
    assert np.all(maps == 0)  # 1x1 source: constant low-res map


@needs_gpu
def test_kernel_on_ortvalues():
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDA execution provider (install onnxruntime-gpu)")
    case = TAIL_CASES[3]
    d = make_tail_inputs(case)
    ov = lambda a: ort.OrtValue.ortvalue_from_numpy(a, "cuda", 0)  # noqa: E731
    A, M = ov(d["A"]), ov(d["M"])
    maps = ov(np.full((case.N, case.H, case.W), np.nan, np.float32))
    alpha = ov(np.full((case.N, case.K), np.nan, np.float32))
    tail_ortvalues(A, M, maps, alpha=alpha)
    get_launcher().synchronize()
    ref_alpha = tail.liftcam_coefficients(d["A"], d["M"])
    _, ref_maps = tail.finish(tail.weighted_sum(d["A"], ref_alpha), (case.H, case.W))
    np.testing.assert_allclose(maps.numpy(), ref_maps, rtol=0, atol=1e-5)


@needs_gpu
def test_pycuda_backend_matches():
    pytest.importorskip("pycuda")
    case = TAIL_CASES[3]
    d = make_tail_inputs(case)
    _, _, maps = tail_numpy(d["A"], d["M"], size=(case.H, case.W), backend="pycuda",
                              poison_outputs=True)
    _, ref = tail.finish(tail.weighted_sum(d["A"], tail.liftcam_coefficients(d["A"], d["M"])),
                         (case.H, case.W))
    np.testing.assert_allclose(maps, ref, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------- benchmark script
def test_benchmark_exits_cleanly_without_gpu(tmp_path):
    if _GPU_OK:
        pytest.skip("a GPU is present: the benchmark would run for real")
    script = os.path.join(REPO, "benchmarks", "gpu_tail.py")
    r = subprocess.run([sys.executable, script, "--json", str(tmp_path / "out.json")],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "no CUDA GPU" in r.stderr
    assert "Traceback" not in r.stderr
