"""The method catalog is the one place for every method's facts: complete, in step with the engine's
registry, and true of what the methods actually compute."""

from __future__ import annotations

import subprocess
import sys
import typing
from dataclasses import fields

import numpy as np

import attribution
from attribution.catalog import CATALOG, MethodInfo
from attribution.results import AttentionScores, ContextAblationScores, OcclusionScores
from conftest import SEED_PROMPT


def test_every_registered_method_has_a_complete_entry_and_nothing_else_does():
    assert list(CATALOG) == list(attribution.METHODS)
    for name, info in CATALOG.items():
        assert info.name == name
        for item in fields(MethodInfo):
            value = getattr(info, item.name)
            assert value is not None and (not isinstance(value, str) or value.strip()), (name, item.name)
        module, function = info.function.split(":")
        assert attribution.METHODS[name].__name__ == function
        assert attribution.METHODS[name].__module__ == f"attribution.{module}"


def test_layered_entries_are_the_methods_that_return_layers():
    for name, method in attribution.METHODS.items():
        returned = typing.get_type_hints(method)["return"]
        assert CATALOG[name].layered == issubclass(returned, AttentionScores), name


def test_removing_entries_are_the_methods_that_run_on_groups():
    # A perturbation's group scores are measured on whole groups (OcclusionScores.groups, context
    # ablation's group weights), never combined from token scores.
    for name, method in attribution.METHODS.items():
        returned = typing.get_type_hints(method)["return"]
        measured_per_group = issubclass(returned, (OcclusionScores, ContextAblationScores))
        assert (CATALOG[name].combine == "remove") == measured_per_group, name


def test_target_dependence_matches_what_a_contrast_does(tiny_loaded):
    settings = dict(methods=list(attribution.METHODS), max_new_tokens=1, n_steps=4)
    plain = attribution.analyze(tiny_loaded, SEED_PROMPT, **settings)
    contrasted = attribution.analyze(tiny_loaded, SEED_PROMPT, contrast=int(plain.target.id) + 1, **settings)
    for name, info in CATALOG.items():
        unchanged = np.array_equal(plain.methods[name].scores, contrasted.methods[name].scores)
        assert unchanged != info.target_dependent, name


def test_answer_map_entries_are_the_methods_the_answer_map_builds(tiny_loaded):
    analysis = attribution.analyze(tiny_loaded, SEED_PROMPT, methods=list(attribution.METHODS), max_new_tokens=2,
                                   n_steps=3, all_targets=True)
    assert set(analysis.answer_map) == {name for name, info in CATALOG.items() if info.answer_map}


def test_the_catalog_and_settings_import_no_torch():
    # `attribution` loads its engine lazily, so the display layer can read the catalog and the settings.
    code = ("import sys, attribution.catalog, attribution.settings; "
            "print(sorted(m for m in ('torch', 'transformers', 'captum') if m in sys.modules))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"
