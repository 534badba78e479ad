"""A dataset's identity by content: what a stage's config names its data by, instead of the data's path.

`dataset_fingerprint(root, dataset, train_list, test_list, annotations)` hashes
- the bytes of the list and annotation files the data loader uses (`layouts.resolve_lists`: the given ones,
  else the ones in the data root, else the packaged official ones) and of the synthetic manifest
  (`gsmoe_dataset.json`) when there is one;
- for every feature file (`*.npy` under the root, found by the same walk as `layouts.FileIndex`): its path
  relative to the root, its size and its .npy header (shape, dtype, order), read without the feature data.

So a dataset copied or moved to another folder keeps its identity, and the stages trained on it stay valid
(`training.config.data_identity`), while a feature file replaced by another (another size or header) or an
edited list changes it. Decision: the feature values themselves are not read (a real dataset is tens of GB);
a file rewritten in place with the same shape and size keeps the identity, which the size and header make
unlikely for features written by another extractor. Per-file headers are remembered by (path, size,
modification time), so asking again costs one `stat` per file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

_HEADER_CACHE: dict[tuple[str, int, int], bytes] = {}
_HEADER_LIMIT = 64 * 1024  # an .npy header is a few hundred bytes; a larger prefix is not an .npy header


def npy_header_bytes(path: Path, size: int, mtime_ns: int) -> bytes:
    """The header of an .npy file (magic, version, header dict) as raw bytes, without reading its data."""
    key = (str(path), size, mtime_ns)
    cached = _HEADER_CACHE.get(key)
    if cached is not None:
        return cached
    with open(path, "rb") as fh:
        prefix = fh.read(12)
        if prefix[:6] != b"\x93NUMPY" or len(prefix) < 10:
            header = prefix  # not an .npy file: its first bytes still distinguish it
        else:
            major = prefix[6]
            length = int.from_bytes(prefix[8:10], "little") if major == 1 else int.from_bytes(prefix[8:12], "little")
            start = 10 if major == 1 else 12
            fh.seek(0)
            header = fh.read(min(start + length, _HEADER_LIMIT))
    _HEADER_CACHE[key] = header
    return header


def _feature_files(root: Path) -> list[Path]:
    """Every *.npy under root (symbolic links followed, as the data loader's walk), in a fixed order."""
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs.sort()
        found += [Path(folder) / name for name in sorted(files) if name.endswith(".npy")]
    return found


def dataset_fingerprint(data_root: str | os.PathLike, dataset: str, train_list: str | None = None,
                        test_list: str | None = None, annotations: str | None = None) -> dict[str, Any]:
    """{"content": 16 hex digits, "feature_files": count} of the dataset (module docstring)."""
    from gsmoe_lib.data.layouts import resolve_lists

    root = Path(data_root)
    h = hashlib.sha256()
    lists = resolve_lists(root, dataset, train_list, test_list, annotations)
    for kind in ("train", "test", "annotations"):
        h.update(f"{kind}\0".encode())
        h.update(lists[kind].path.read_bytes())
    manifest = root / "gsmoe_dataset.json"
    h.update(manifest.read_bytes() if manifest.is_file() else b"no manifest")
    files = _feature_files(root) if root.is_dir() else []
    for path in files:
        st = path.stat()
        h.update(f"\0{path.relative_to(root).as_posix()}\0{st.st_size}\0".encode())
        h.update(npy_header_bytes(path, st.st_size, st.st_mtime_ns))
    return {"content": h.hexdigest()[:16], "feature_files": len(files)}
