"""The engine stays an engine: importing it loads no UI or plotting library, and its own copy of
Captum's integration rule equals Captum's."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from captum.attr._utils.approximation_methods import approximation_parameters

from attribution.integrated_gradients import integration_nodes


def test_importing_the_engine_loads_neither_gradio_nor_matplotlib():
    code = "import sys, attribution; print(sorted(m for m in ('gradio', 'matplotlib') if m in sys.modules))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


@pytest.mark.parametrize("n_steps", [1, 7, 50, 301])
def test_integration_nodes_equal_captums(n_steps):
    step_sizes_of, alphas_of = approximation_parameters("gausslegendre")
    alphas, weights = integration_nodes(n_steps)
    torch.testing.assert_close(alphas, torch.tensor(alphas_of(n_steps), dtype=torch.float64), rtol=0, atol=0)
    torch.testing.assert_close(weights, torch.tensor(step_sizes_of(n_steps), dtype=torch.float64), rtol=0, atol=0)
