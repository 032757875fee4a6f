"""A method added with `answer_map=True` by one file and one catalog entry gets its answer map: each row is
the method run on the prompt and the generated tokens before that row's token. Done for real in a copy
of the package, in a fresh interpreter."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from conftest import REPO_ROOT

NEW_METHOD = '''"""The gradient's squared norm: a made-up method, to show where a new one goes."""

from .methods import gradient
from .results import MethodScores


def squared_gradient(loaded, request) -> MethodScores:
    return MethodScores(method="squared_gradient", scores=gradient(loaded, request).scores ** 2)
'''

CATALOG_ENTRY = '''        MethodInfo(
            name="squared_gradient",
            function="squared_gradient:squared_gradient",
            label="Squared gradient",
            description="The gradient's squared L2 norm.",
            help="The gradient's squared L2 norm: only here to show how a method with an answer map is added.",
            color="purple",
            signed=False,
            target_dependent=True,
            layered=False,
            answer_map=True,
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

loaded = attribution.load_model(sys.argv[1])
prompt = "What is the Capital City of Latvia?"
assert "squared_gradient" in attribution.ANSWER_MAP_METHODS
mapped = attribution.analyze(loaded, prompt, methods=["squared_gradient", "gradient"], max_new_tokens=3,
                             all_targets=True)
table = mapped.answer_map["squared_gradient"]
assert table.matrix.shape == (3, mapped.n_tokens + 2), table.matrix.shape
for k in (1, 2, 3):
    single = attribution.analyze(loaded, prompt, methods=["gradient"], max_new_tokens=3, target=k)
    expected = single.methods["gradient"].scores ** 2  # computed independently: the plain gradient, squared
    row = table.matrix[k - 1]
    np.testing.assert_allclose(row[: single.n_tokens], expected, rtol=1e-4, atol=1e-9)
    assert not row[single.n_tokens:].any()  # a causal model: later sources cannot matter
# The batched gradient builder and the per-token runs agree on the same quantity.
np.testing.assert_allclose(table.matrix, mapped.answer_map["gradient"].matrix ** 2, rtol=1e-4, atol=1e-9)
print("mapped")
'''


def test_a_method_with_answer_map_true_gets_its_answer_map(tmp_path, tiny_folder):
    tree = tmp_path / "tree"
    shutil.copytree(REPO_ROOT / "attribution", tree / "attribution", ignore=shutil.ignore_patterns("__pycache__"))
    (tree / "attribution" / "squared_gradient.py").write_text(NEW_METHOD, encoding="utf-8")
    catalog = tree / "attribution" / "catalog.py"
    text = catalog.read_text(encoding="utf-8")
    end = text.index("        ),\n    )\n}\n") + len("        ),\n")
    catalog.write_text(text[:end] + CATALOG_ENTRY + text[end + len("    )\n}\n"):], encoding="utf-8")
    environment = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", CHECK, str(tiny_folder)], cwd=tmp_path, env=environment,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("mapped")
