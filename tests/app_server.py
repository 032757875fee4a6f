"""Serve app.py in this process on a free loopback port, for tests that talk to it over HTTP.

Only 127.0.0.1 is ever bound or contacted; the demo is always closed, even when a test fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


@dataclass
class Served:
    url: str
    demo: Any


@contextmanager
def serve(default_model: str) -> Iterator[Served]:
    """Build the app's Blocks for `default_model` and launch it on a free 127.0.0.1 port.

    The server gets its own gradio cache folder. Gradio names cached copies by a hash of their
    content with a seed shared by every process on the machine (gradio/hash_seed.txt), and a closing
    server deletes every cached file it handed out: another test process (or app) that produced the
    same bytes would then see its download links answer 403. A private folder keeps runs apart.
    """
    import app

    cache = tempfile.mkdtemp(prefix="attribution-test-gradio-")
    previous = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = cache  # read when the Blocks are built and when the server starts
    demo = None
    url = None
    try:
        demo = app.build_demo(default_model, cache_examples=False)
        for _attempt in range(5):  # a port picked free can be taken before gradio binds it
            port = free_port()
            try:
                demo.launch(server_name=LOOPBACK, server_port=port, prevent_thread_lock=True, quiet=True)
            except OSError:
                continue
            url = f"http://{LOOPBACK}:{port}/"
            break
        if url is None:
            raise RuntimeError("could not bind a free loopback port for the app")
        yield Served(url, demo)
    finally:
        if demo is not None:
            demo.close()
        if previous is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = previous
        shutil.rmtree(cache, ignore_errors=True)


def make_client(url: str, download_dir: Path | str | bool):
    """A gradio_client Client for the loopback app: no telemetry, no banner."""
    from gradio_client import Client

    assert url.startswith(f"http://{LOOPBACK}:"), url
    download = download_dir if download_dir is False else str(download_dir)
    return Client(url, verbose=False, download_files=download, analytics_enabled=False)


def api_outputs(result: Any) -> dict[str, Any]:
    """`/analyze`'s outputs by name (the client leaves the State output out)."""
    import app

    keys = [key for key in app.OUTPUT_KEYS if key != "state"]
    assert len(result) == len(keys), (len(result), len(keys))
    return dict(zip(keys, result))
