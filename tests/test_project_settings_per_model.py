"""Projection settings follow the model: PTI's published ones for 256 px and larger models, the
toy model's measured ones below; overridable by name."""

from __future__ import annotations

import pytest

from dragfu.errors import BadInputError
from dragfu.models import load_generator
from dragfu.project import ProjectSettings
from dragfu.project.settings import PTI_SETTINGS, settings_for
from tests.conftest import make_tiny_generator


def test_small_models_get_the_measured_defaults_and_big_ones_ptis():
    toy = load_generator("toy", "cpu")
    assert settings_for(toy) == ProjectSettings()
    big = make_tiny_generator(resolution=256)
    chosen = settings_for(big)
    assert chosen == PTI_SETTINGS
    # PTI's published values (Roich et al. 2021).
    assert (chosen.w_steps, chosen.w_lr, chosen.tune_steps, chosen.tune_lr) == (
        450,
        5e-3,
        350,
        3e-4,
    )
    assert chosen.tune_l2_weight == 1.0 and chosen.latent_l2_weight == 0.0


def test_overrides_apply_on_the_models_defaults_and_explicit_settings_win():
    big = make_tiny_generator(resolution=256)
    tuned = settings_for(big, {"tune_steps": 10})
    assert tuned.tune_steps == 10 and tuned.tune_lr == 3e-4  # the rest stays PTI's
    explicit = ProjectSettings(w_steps=3)
    assert settings_for(big, explicit) is explicit
    with pytest.raises(BadInputError, match="w_stepz"):
        settings_for(big, {"w_stepz": 1})


def test_the_server_backend_projects_a_big_model_with_ptis_settings(monkeypatch):
    from dragfu.protocol.torch_backend import EngineBackend

    big = make_tiny_generator(resolution=256)
    assert EngineBackend._project_settings(big, {}) == PTI_SETTINGS
    assert EngineBackend._project_settings(big, {"w_steps": 7}).w_steps == 7
