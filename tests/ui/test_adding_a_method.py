"""A newcomer adds a method by writing one file and one catalog entry; the registry, the display layer
and the page follow. Done for real in a copy of the tree, in a fresh interpreter."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from conftest import REPO_ROOT

NEW_METHOD = '''"""Gradient × −1: a made-up method, to show where a new one goes."""

from .methods import gradient
from .results import MethodScores


def negated_gradient(loaded, request) -> MethodScores:
    return MethodScores(method="negated_gradient", scores=-gradient(loaded, request).scores)
'''

CATALOG_ENTRY = '''        MethodInfo(
            name="negated_gradient",
            function="negated_gradient:negated_gradient",
            label="Negated gradient",
            description="The gradient's L2 norm times -1.",
            help="The gradient's L2 norm times -1: only here to show how a method is added.",
            color="teal",
            signed=True,
            target_dependent=True,
            layered=False,
            answer_map=False,
            axis_label="{label} score",
            combine="sum",
        ),
    )
}
'''

CHECK = '''
import sys
import numpy as np
import attribution
from attribution.display.figure_style import method_color
from attribution.display.plotting import analysis_figures
import app
from ui.analysis import OUTPUT_KEYS, analyze

model = sys.argv[1]
assert "negated_gradient" in attribution.METHODS
analysis = attribution.analyze(attribution.load_model(model), "Hello there", methods=["gradient", "negated_gradient"],
                               max_new_tokens=2, trust=True)
np.testing.assert_allclose(analysis.methods["negated_gradient"].scores, -analysis.methods["gradient"].scores,
                           rtol=0, atol=0)
assert "negated_gradient" in analysis.to_dict()["methods"]
figures = analysis_figures(analysis)
assert "negated_gradient:bars" in figures
assert method_color("negated_gradient") == "teal"
assert [key for key in OUTPUT_KEYS if key.startswith("negated_gradient:")] == [
    "negated_gradient:notes", "negated_gradient:highlight", "negated_gradient:bars", "negated_gradient:top"]
demo = app.build_demo(model, cache_examples=False)
assert any(getattr(block, "elem_id", None) == "tab-negated_gradient" for block in demo.blocks.values())
outputs = dict(zip(OUTPUT_KEYS, analyze("Hello there", model, methods=["gradient", "negated_gradient"],
                                        max_new_tokens=2)))
assert outputs["negated_gradient:notes"].startswith("**Negated gradient")
print("added")
'''


def test_a_method_is_added_by_one_file_and_one_catalog_entry(tmp_path, tiny_folder):
    tree = tmp_path / "tree"
    for name in ("attribution", "ui"):
        shutil.copytree(REPO_ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "app.py", tree / "app.py")
    (tree / "attribution" / "negated_gradient.py").write_text(NEW_METHOD, encoding="utf-8")
    catalog = tree / "attribution" / "catalog.py"
    text = catalog.read_text(encoding="utf-8")
    end = text.index("        ),\n    )\n}\n") + len("        ),\n")
    catalog.write_text(text[:end] + CATALOG_ENTRY + text[end + len("    )\n}\n"):], encoding="utf-8")
    environment = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    result = subprocess.run([sys.executable, "-c", CHECK, str(tiny_folder)], cwd=tree, env=environment,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("added")
