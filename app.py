"""The Gradio app (and Hugging Face Space): which prompt tokens drove the model's next token?

This file only builds the page (`ui.page`) and launches it. The engine is `attribution`, its figures,
tables and text `attribution.display`, and the page's tabs, controls and handlers `ui/`.

    python app.py                      # http://127.0.0.1:7860 on the shipped demo model, offline
    python app.py --share              # plus a public *.gradio.live link (or GRADIO_SHARE=1)
    python app.py --host 0.0.0.0 --port 8080 --model meta-llama/Llama-3.2-1B
"""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import Any, Sequence

import ui  # first: on ZeroGPU it imports `spaces` before torch
import attribution
from ui.analysis import OUTPUT_KEYS, analyze  # noqa: F401 (the API's function and outputs, for scripts)
from ui.page import build_demo, launch_options
from ui.runtime import is_hosted

__all__ = ["OUTPUT_KEYS", "analyze", "build_demo", "launch_options", "main", "parse_args", "server_settings", "ui"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the token attribution app.")
    parser.add_argument("--share", action="store_true",
                        help="also create a public *.gradio.live link (or set GRADIO_SHARE=1)")
    parser.add_argument("--host", default=None,
                        help="address to bind (default: $GRADIO_SERVER_NAME, 0.0.0.0 on a Space, else 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None,
                        help="port (default: $GRADIO_SERVER_PORT, else 7860)")
    parser.add_argument("--model", default=None,
                        help="default model: hub id or folder (default: $MODEL_ID, else the demo model)")
    return parser.parse_args(argv)


def server_settings(arguments: argparse.Namespace) -> dict[str, Any]:
    """Where to serve: flags first, then gradio's environment variables, then 127.0.0.1:7860
    (0.0.0.0 on a Space, as Spaces expect); GRADIO_SHARE=1 also asks for a public link."""
    share = arguments.share or os.environ.get("GRADIO_SHARE", "").strip().lower() in {"1", "true", "yes", "on"}
    host = arguments.host or os.environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if is_hosted() else "127.0.0.1")
    port = arguments.port or int(os.environ.get("GRADIO_SERVER_PORT") or 7860)
    return {"server_name": host, "server_port": port, "share": share}


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parse_args(argv)
    default_model = arguments.model or attribution.default_model_name()
    # Lazily cached examples belong to this process's model: a retrained model must not show old ones.
    os.environ.setdefault("GRADIO_EXAMPLES_CACHE", tempfile.mkdtemp(prefix="attribution-examples-"))
    try:
        attribution.load_model(default_model)  # load once up front (on ZeroGPU, before any GPU call)
    except ValueError as error:
        print(f"warning: the default model did not load ({error}); pick another model in the page")
    demo = build_demo(default_model)
    demo.launch(**server_settings(arguments), **launch_options())


if __name__ == "__main__":
    main()
