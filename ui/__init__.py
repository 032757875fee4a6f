"""The Gradio page over `attribution`: one module per tab (`ui/tabs/`), the input controls, the
ordered settings list, the analysis handler, and the page that wires them; `app.py` builds and launches it.

Only this package turns the library's ValueError into gr.Error. `runtime` is imported first: on a
ZeroGPU Space `spaces` must be imported before torch sets up CUDA.
"""

from . import runtime  # noqa: F401 (first: imports `spaces` before torch on ZeroGPU)
