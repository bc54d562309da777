"""Which image files a run reads, and the names its outputs get.

``collect_inputs`` expands files, folders and globs (no symlinked folders are followed, so a
link loop cannot hang a run: ``**`` patterns are matched over :func:`os.walk` with
``followlinks=False``, never with :func:`glob.glob`, whose ``**`` follows symlinked folders);
``output_stems`` gives every input a safe, unique output stem.
"""
from __future__ import annotations

import fnmatch
import glob
import os
import unicodedata
from pathlib import Path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff",
                    ".webp", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico")
MAX_STEM_BYTES = 100     # output stems are cut to this many UTF-8 bytes (NAME_MAX is 255)


def _walk(d: Path):
    """Regular files under ``d`` (recursive, sorted), skipping hidden entries and never
    following symlinked folders."""
    for root, dirs, files in os.walk(d, followlinks=False):
        dirs[:] = sorted(x for x in dirs if not x.startswith("."))
        for f in sorted(files):
            if not f.startswith("."):
                yield Path(root) / f


def _match(pat: tuple, comps: tuple) -> bool:
    """Path components against pattern components; ``**`` matches zero or more components.
    Iterative over the set of reachable pattern positions (no backtracking blow-up)."""
    states = {0}
    for comp in comps:
        nxt = set()
        for i in _closure(pat, states):
            if i < len(pat):
                if pat[i] == "**":
                    nxt.add(i)
                elif fnmatch.fnmatchcase(comp, pat[i]):
                    nxt.add(i + 1)
        if not nxt:
            return False
        states = nxt
    return len(pat) in _closure(pat, states)


def _closure(pat, states):
    out, todo = set(states), list(states)
    while todo:
        i = todo.pop()
        if i < len(pat) and pat[i] == "**" and i + 1 not in out:
            out.add(i + 1)
            todo.append(i + 1)
    return out


def _glob_walk(pattern: str):
    """The files a ``**`` pattern matches (or that lie under a folder it matches), walking
    from its literal prefix without following symlinked folders."""
    parts = pattern.split("/")
    i = next(k for k, part in enumerate(parts) if glob.has_magic(part))
    root = "/".join(parts[:i]) or ("/" if pattern.startswith("/") else ".")
    pat = tuple(p for p in parts[i:] if p)
    if not os.path.isdir(root):
        return
    for f in _walk(Path(root)):
        comps = Path(os.path.relpath(f, root)).parts
        if any(_match(pat, comps[:n]) for n in range(1, len(comps) + 1)):
            yield f if root != "." else Path(*comps)


def collect_inputs(specs, exclude=None):
    """Expand files, folders (recursive, image extensions) and globs.

    Returns ``(files, missing)``: the files in order without duplicates, and the specs that
    matched nothing. Explicit files are taken whatever their extension; folder and glob matches
    only with an image extension. Paths under ``exclude`` (the output folder) are skipped.
    ``**`` in a glob does not follow symlinked folders."""
    exclude = Path(exclude).resolve() if exclude is not None else None
    seen, files, missing = set(), [], []

    def add(p: Path, check_ext: bool):
        if check_ext and p.suffix.lower() not in IMAGE_EXTENSIONS:
            return
        r = p.resolve()
        if exclude is not None and (r == exclude or exclude in r.parents):
            return
        if r not in seen:
            seen.add(r)
            files.append(p)

    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            for f in _walk(p):
                add(f, True)
        elif p.is_file():
            add(p, False)
        elif "**" in str(spec):
            matches = sorted(_glob_walk(str(spec)))
            for m in matches:
                add(m, True)
            if not matches:
                missing.append(spec)
        elif glob.has_magic(str(spec)):
            matches = sorted(glob.glob(str(spec)))
            for m in matches:
                mp = Path(m)
                if mp.is_dir() and not mp.is_symlink():
                    for f in _walk(mp):
                        add(f, True)
                elif mp.is_file():
                    add(mp, True)
            if not matches:
                missing.append(spec)
        else:
            missing.append(spec)
    return files, missing


def safe_stem(name: str) -> str:
    """A file-name stem that is printable, valid UTF-8 and at most MAX_STEM_BYTES long."""
    out = []
    for ch in name:
        bad = unicodedata.category(ch) in ("Cc", "Cf", "Cs") or ch in '/\\\0'
        out.append("_" if bad else ch)
    stem = "".join(out).strip() or "image"
    while len(stem.encode("utf-8")) > MAX_STEM_BYTES:
        stem = stem[:-1]
    return stem


def output_stems(files) -> list:
    """Output stems: each file's safe stem, made unique with -2, -3, ... where stems collide
    (compared case-insensitively, for case-insensitive file systems)."""
    taken, out = set(), []
    for f in files:
        stem = safe_stem(Path(f).stem)
        cand, n = stem, 1
        while cand.lower() in taken:
            n += 1
            cand = f"{stem}-{n}"
        taken.add(cand.lower())
        out.append(cand)
    return out


def printable(name) -> str:
    """A path for messages: control characters and undecodable bytes shown escaped."""
    text = os.fsdecode(name) if isinstance(name, bytes) else str(name)
    return "".join(ch if ch.isprintable() and not 0xDC80 <= ord(ch) <= 0xDCFF
                   else ascii(ch)[1:-1] for ch in text)
