"""The app's download files: one fresh folder per request, with fixed file names, swept when old.

No user input ever reaches a path here. Gradio copies returned files into its own cache (swept by
the Blocks' `delete_cache`); the originals are removed here once they are older than EXPORT_TTL_S,
and all of them when the process exits.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from pathlib import Path

from attribution.results import Analysis

# Folders older than this (seconds) are swept; the app also gives gradio's cache this age.
EXPORT_TTL_S = 3600

_export_root: Path | None = None


def new_export_dir() -> Path:
    """A fresh folder for one request's files, after sweeping the expired ones."""
    global _export_root
    if _export_root is None or not _export_root.exists():
        _export_root = Path(tempfile.mkdtemp(prefix="attribution-exports-"))
        atexit.register(shutil.rmtree, _export_root, True)
    cutoff = time.time() - EXPORT_TTL_S
    for child in _export_root.iterdir():
        try:
            expired = child.stat().st_mtime < cutoff
        except FileNotFoundError:  # swept by a request rendering at the same time (e.g. an example)
            continue
        if expired:
            shutil.rmtree(child, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=_export_root))


def write_bytes(path: Path, data: bytes) -> None:
    """Write a download atomically: a reader never sees half a file."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def write_result_files(analysis: Analysis, folder: Path) -> tuple[Path, Path]:
    """The full result as attribution.json and the scores table as attribution.csv (the CLI's formats)."""
    json_path = folder / "attribution.json"
    json_path.write_text(analysis.to_json(), encoding="utf-8")
    csv_path = folder / "attribution.csv"
    csv_path.write_text(analysis.to_csv(), encoding="utf-8")
    return json_path, csv_path
