"""Files written atomically: a temporary file in the same folder, fsync, then ``os.replace``,
so a reader (or a crash) never sees a half-written output."""
from __future__ import annotations

import io
import os
import tempfile

import numpy as np
from PIL import Image

from liftcam.engine.errors import InputError

__all__ = [
    "write_bytes_atomic",
    "save_png_atomic",
    "save_npy_atomic",
]


def write_bytes_atomic(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same directory, fsync,
    ``os.replace``). On any error the temp file is removed and ``path`` is untouched."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise InputError(f"cannot write {path!r}: directory {directory!r} does not exist")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def save_png_atomic(img, path) -> None:
    """Save a PIL image (or a uint8 (H,W)/(H,W,3)/(H,W,4) array) as PNG, atomically."""
    if isinstance(img, np.ndarray):
        ok_shape = img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (3, 4))
        if img.dtype != np.uint8 or not ok_shape:
            raise InputError(f"PNG array must be uint8 (H,W), (H,W,3) or (H,W,4); "
                             f"got {img.dtype} {img.shape}")
        img = Image.fromarray(img)
    if not isinstance(img, Image.Image):
        raise InputError(f"expected a PIL image or uint8 array, got {type(img).__name__}")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    write_bytes_atomic(path, buf.getvalue())


def save_npy_atomic(arr, path) -> None:
    """Save an array in .npy format to exactly ``path`` (no suffix added), atomically."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr), allow_pickle=False)
    write_bytes_atomic(path, buf.getvalue())
