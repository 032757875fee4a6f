"""attribution.exports: per-request download folders, swept when old, and the result files."""

from __future__ import annotations

import json
import os
import time

from ui import exports
from helpers import make_rich_analysis


def test_export_folders_are_per_request_and_old_ones_are_swept(monkeypatch):
    first, second = exports.new_export_dir(), exports.new_export_dir()
    assert first != second and first.parent == second.parent == exports._export_root
    (first / "attribution.json").write_text("{}")
    old = time.time() - exports.EXPORT_TTL_S - 60
    os.utime(first, (old, old))
    third = exports.new_export_dir()
    assert not first.exists(), "a folder older than EXPORT_TTL_S must be swept"
    assert second.exists() and third.exists(), "young folders stay"


def test_a_folder_swept_by_a_concurrent_request_does_not_fail_this_one(monkeypatch):
    exports.new_export_dir()
    real_root = exports._export_root

    class RacingRoot(type(real_root)):
        def iterdir(self):
            yield self / "swept-by-another-request"  # listed, then gone before it is looked at
            yield from super().iterdir()

    monkeypatch.setattr(exports, "_export_root", RacingRoot(real_root))
    folder = exports.new_export_dir()
    assert folder.is_dir() and folder.parent == real_root


def test_result_files_are_the_cli_formats(tmp_path):
    analysis = make_rich_analysis()
    json_path, csv_path = exports.write_result_files(analysis, tmp_path)
    assert (json_path.name, csv_path.name) == ("attribution.json", "attribution.csv")
    text = json_path.read_text(encoding="utf-8")
    assert json.loads(text) == json.loads(json.dumps(analysis.to_dict())) and text.endswith("}\n")
    assert csv_path.read_bytes() == analysis.to_csv().encode("utf-8")  # csv rows end in \r\n, kept as written
