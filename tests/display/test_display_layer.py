"""The display layer draws saved results without the engine: importing it loads no torch."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import attribution.display


def test_importing_every_display_module_loads_no_torch_and_no_gradio():
    modules = [f"attribution.display.{info.name}" for info in pkgutil.iter_modules(attribution.display.__path__)]
    assert "attribution.display.method_figures" in modules  # the listing found the package's modules
    code = (f"import importlib, sys; [importlib.import_module(name) for name in {modules!r}]; "
            "print(sorted(m for m in ('torch', 'transformers', 'captum', 'gradio') if m in sys.modules))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"
