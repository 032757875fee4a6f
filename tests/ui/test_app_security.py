"""Security of the served app: nothing a user types reaches a shell or an export path, exports are swept,
the hub token never leaks, and the tests bind loopback only."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402

import app  # noqa: E402
from ui import exports  # noqa: E402
import attribution.models as models_module  # noqa: E402
from helpers import (  # noqa: E402
    API_QUICK,
    LOOPBACK,
    REQUEST_TIMEOUT_S,
    api_outputs,
    assert_clear_error,
    assert_refused_then_serving,
    call,
    make_client,
    serve,
)
from conftest import REPO_ROOT, SEED_PROMPT  # noqa: E402

# --- hosted Space: only the allow list loads, never a local path ---------------------------------------


def test_hosted_space_loads_only_allowed_models_and_no_local_path(monkeypatch, tiny_folder, model_folders,
                                                                  tmp_path):
    other_local = model_folders["narrow-untied"]
    monkeypatch.setenv("SPACE_ID", "someone/token-attribution")
    monkeypatch.setenv("MODEL_ID", str(tiny_folder))  # the Space's own default model
    monkeypatch.setenv("ALLOWED_MODELS", "someone/allowed-model")
    refused_paths = [
        str(other_local),
        f"{tiny_folder}/../{other_local.name}",
        f"{tiny_folder}/.",
        "/etc",
        "~/.cache/huggingface",
        "./assets/../tests",
        "../" * 8 + "etc",
    ]
    # What this test's requests load, whatever earlier tests left in the process-wide model cache.
    cached_before = set(models_module._cache)
    with serve(str(tiny_folder)) as server:
        hosted = make_client(server.url, tmp_path / "downloads")
        try:
            assert call(hosted)["gradient:highlight"]  # the Space's default serves
            for path in refused_paths:
                with pytest.raises(Exception) as raised:
                    call(hosted, model=path)
                assert_clear_error(raised.value, "local model folders cannot be loaded on the hosted Space")
            text = assert_refused_then_serving(hosted, "is not allowed on this Space", model="someone/other-model")
            assert "someone/allowed-model" in text
            # An allowed id passes the policy (and then fails here only because the hub is offline).
            assert_refused_then_serving(hosted, "could not load model 'someone/allowed-model'",
                                        model="someone/allowed-model")
        finally:
            hosted.close()
    loaded_here = {key[0] for key in set(models_module._cache) - cached_before}
    assert loaded_here <= {str(tiny_folder)}, f"a refused model was loaded: {loaded_here}"


# --- security ---------------------------------------------------------------------------------------

SOURCES = [REPO_ROOT / "app.py", *sorted((REPO_ROOT / "attribution").glob("*.py"))]


def test_source_never_enables_remote_code_or_runs_a_shell():
    forbidden = {
        "remote code enabled": re.compile(r"trust_remote_code[\"']?\s*[=:]\s*(True|1|[a-z_]+\()"),
        "a shell or subprocess": re.compile(r"\b(subprocess|os\.system|os\.popen|os\.exec\w*|pty\.spawn)\b|shell\s*=\s*True"),
        "eval or exec": re.compile(r"(?<![\w.])(eval|exec)\s*\("),
        "unsafe deserialisation": re.compile(r"\b(pickle|marshal|shelve)\.loads?\b|torch\.load\("),
    }
    problems = []
    for source in SOURCES:
        for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
            for what, pattern in forbidden.items():
                if pattern.search(line):
                    problems.append(f"{source.relative_to(REPO_ROOT)}:{number}: {what}: {line.strip()}")
    assert not problems, "\n".join(problems)
    assert '"trust_remote_code": False' in (REPO_ROOT / "attribution" / "models.py").read_text(encoding="utf-8")


EXPORT_NAMES = {"attribution.json", "attribution.csv"}


def test_user_input_never_reaches_export_paths(tiny_folder, tmp_path):
    tricky_prompt = "../../../../etc/passwd; rm -rf / $(touch pwned) `id` | cat /etc/shadow > x.json"
    tricky_model = f"{tiny_folder}/../{tiny_folder.name}/./"  # the same folder, spelled with path tricks
    with serve(str(tiny_folder)) as server:
        remote = make_client(server.url, False)  # file outputs come back as the server's own paths
        try:
            result = api_outputs(remote.submit(
                tricky_prompt, tricky_model, ["gradient"], 0, 2, api_name="/analyze").result(timeout=REQUEST_TIMEOUT_S))
            pngs = remote.submit(api_name="/figures_png").result(timeout=REQUEST_TIMEOUT_S)  # made when asked for
        finally:
            remote.close()
    files = [result["export:json"], result["export:csv"], *pngs]
    server_paths = [Path(item["path"] if isinstance(item, dict) else item.path) for item in files]
    assert {path.name for path in server_paths[:2]} == EXPORT_NAMES
    assert all(re.fullmatch(r"[a-z_]+\.png", path.name) for path in server_paths[2:])
    for path in server_paths:
        assert ".." not in path.parts and "passwd" not in str(path) and "etc" not in path.parts
    # The originals sit in fresh per-request folders under the app's export root, with fixed names: the
    # JSON and CSV in one, the PNGs in the next.
    folders = sorted(exports._export_root.iterdir(), key=lambda child: child.stat().st_mtime)[-2:]
    assert {child.name for child in folders[0].iterdir()} == EXPORT_NAMES
    assert {child.name for child in folders[1].iterdir()} == {path.name for path in server_paths[2:]}
    assert all(folder.parent == exports._export_root and folder.name.startswith("tmp") for folder in folders)
    data = json.loads((folders[0] / "attribution.json").read_text(encoding="utf-8"))
    assert data["prompt"] == tricky_prompt  # kept as data, never used as a path or a command
    assert not (REPO_ROOT / "pwned").exists() and not Path("pwned").exists()


def test_served_exports_are_cleaned_up_after_a_short_age(monkeypatch, tiny_folder, tmp_path):
    """With a 1 s age: gradio's cached copies are deleted on its schedule, and our per-request
    originals are swept at the next request."""
    monkeypatch.setattr(exports, "EXPORT_TTL_S", 1)
    with serve(str(tiny_folder)) as server:
        remote = make_client(server.url, False)
        try:
            first = api_outputs(remote.submit(SEED_PROMPT, **API_QUICK, api_name="/analyze").result(
                timeout=REQUEST_TIMEOUT_S))
            cached = Path(first["export:json"]["path"] if isinstance(first["export:json"], dict)
                          else first["export:json"].path)
            original = max(exports._export_root.iterdir(), key=lambda child: child.stat().st_mtime)
            assert (original / "attribution.json").exists()
            deadline = time.monotonic() + 30
            while cached.exists() and time.monotonic() < deadline:
                time.sleep(0.25)
            assert not cached.exists(), "gradio's cached copy outlived its age"
            # The sweep removes folders whose mtime is older than EXPORT_TTL_S: wait until this one is.
            while (original.stat().st_mtime >= time.time() - exports.EXPORT_TTL_S
                   and time.monotonic() < deadline):
                time.sleep(0.05)
            assert original.stat().st_mtime < time.time() - exports.EXPORT_TTL_S
            remote.submit(SEED_PROMPT, **API_QUICK, api_name="/analyze").result(timeout=REQUEST_TIMEOUT_S)
            assert not original.exists(), "the per-request export folder outlived its age"
        finally:
            remote.close()


def test_hf_token_never_appears_in_logs_errors_or_exports(served, monkeypatch, tmp_path, capfd, caplog):
    secret = "hf_SECRETapp0123456789abcdefXYZ"
    client = make_client(served.url, tmp_path / "downloads")  # made before the token is set
    caplog.set_level("DEBUG")
    monkeypatch.setenv("HF_TOKEN", secret)
    real_config = models_module.AutoConfig.from_pretrained

    tokens_passed = []

    def leaky_config(name, *args, **kwargs):
        tokens_passed.append(kwargs.get("token") == secret)  # the token is used for the hub ...
        if name == "someone/private-model":
            raise OSError(f"401 Client Error: Unauthorized for url with token {secret}")
        if name == "someone/flaky-model":
            raise OSError(f"Connection reset while sending Authorization: Bearer {secret}\nmore {secret}")
        return real_config(name, *args, **kwargs)

    monkeypatch.setattr(models_module.AutoConfig, "from_pretrained", leaky_config)
    texts: list[str] = []
    files: list[Path] = []
    try:
        for fields in ({"model": "someone/private-model"}, {"model": "someone/flaky-model"},
                       {"model": "no-such-org/no-such-model"}, {"prompt": ""}, {"ig_steps": 0}):
            with pytest.raises(Exception) as raised:
                call(client, **fields)
            texts.append(str(raised.value))
        values = call(client, methods=["gradient", "attention", "integrated_gradients"], max_new_tokens=2)
        texts.append(json.dumps(values, default=str))
        pngs = client.submit(api_name="/figures_png").result(timeout=REQUEST_TIMEOUT_S)
        files = [Path(values["export:json"]), Path(values["export:csv"]), *map(Path, pngs)]
    finally:
        client.close()
    assert "gated" in texts[0] and "HF_TOKEN" in texts[0]
    assert tokens_passed and all(tokens_passed)  # ... and only there
    captured = capfd.readouterr()
    texts += [captured.out, captured.err, caplog.text]
    texts += [record.getMessage() for record in caplog.records]
    leaks = [text[:200] for text in texts if secret in text]
    leaks += [str(path) for path in files if secret.encode() in path.read_bytes()]
    assert not leaks, leaks
    assert all(path.exists() for path in files)


def test_app_binds_loopback_only_in_these_tests(served):
    assert served.url.startswith(f"http://{LOOPBACK}:")
    assert app.server_settings(app.parse_args([]))["server_name"] == "127.0.0.1"

