"""Two models in memory only when they fit (`attribution.memory`)."""

from __future__ import annotations

import pytest

import attribution
from attribution import memory
from attribution.models import loaded_models


def test_parameter_count_from_the_config_is_the_models(model_folders):
    for folder in model_folders.values():
        loaded = attribution.load_model(str(folder), device="cpu")
        counted = sum(parameter.numel() for parameter in loaded.model.parameters())
        assert memory.parameter_count(loaded.model.config) == counted
        assert memory.weight_bytes(str(folder), "cpu") == counted * 4  # fp32 on the CPU


def test_the_first_model_is_released_only_when_both_do_not_fit(model_folders, monkeypatch):
    first, second = (str(model_folders[name]) for name in ("tiny-gqa-tied", "narrow-untied"))
    attribution.clear_cache()
    first_loaded = attribution.load_model(first, device="cpu")
    loaded, plan = memory.load_second(first, second, "cpu")
    assert plan.both_fit and "Both models in memory" in plan.text(first)
    assert {model.name for model in loaded_models()} == {first, second}
    memory.finish_second(loaded, plan)
    assert {model.name for model in loaded_models()} == {first, second}  # kept: they fit

    attribution.clear_cache()
    attribution.load_model(first, device="cpu")
    needed = int(memory.HEADROOM * memory.weight_bytes(second, "cpu"))
    monkeypatch.setattr(memory, "_available_memory_bytes", lambda device: needed - 1)
    loaded, plan = memory.load_second(first, second, "cpu")
    assert not plan.both_fit and plan.needed_bytes == needed
    assert "One model at a time" in plan.text(first) and first in plan.text(first)
    assert [model.name for model in loaded_models()] == [second]
    memory.finish_second(loaded, plan)
    assert loaded_models() == []
    assert first_loaded.model is not None  # the caller's own reference still works


def test_an_unknown_model_cannot_be_sized(tmp_path):
    with pytest.raises(ValueError, match="cannot read the config"):
        memory.weight_bytes(str(tmp_path / "nothing-here"))
