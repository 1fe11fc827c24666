"""The embedded toy generator: loads by name, and draws faces of its world."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench.train_toy import target_params
from dragfu.models import load_generator
from dragfu.models.registry import ASSETS_DIR
from dragfu.toy import landmark_array
from dragfu.toy.detector import detect

SEEDS = range(8)


@pytest.fixture(scope="module")
def toy():
    return load_generator("toy")


@pytest.fixture(scope="module")
def samples(toy):
    z = np.concatenate([np.random.RandomState(seed).randn(1, toy.z_dim) for seed in SEEDS])
    with torch.no_grad():
        images = toy(torch.from_numpy(z).float(), None, truncation_psi=1.0, noise_mode="const")
    images = (images * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return z, images


def test_the_embedded_model_and_its_config(toy):
    path = ASSETS_DIR / "toy.safetensors"
    assert path.stat().st_size <= 20 * 1024 * 1024
    assert toy.img_resolution == 128 and toy.z_dim == toy.w_dim <= 512
    kwargs = toy.init_kwargs
    assert 64 <= kwargs["channel_max"] <= 128
    assert kwargs["mapping_kwargs"].get("num_layers", 8) <= 8
    document = json.loads(path.with_suffix(".json").read_text())
    # The script's name when the committed model was trained; it is now `python -m bench.train_toy`.
    assert document["training"]["script"] == "python -m dragfu.toy.train"
    assert document["training"]["minutes"] <= 90
    # Truncation needs the mean w: set from the trained mapping, not left at zero.
    assert toy.mapping.w_avg.abs().sum() > 0
    assert torch.allclose(toy.mapping.w_avg, toy.mean_w(samples=2000, seed=1), atol=0.1)


def test_seeded_samples_show_all_landmarks(samples):
    _, images = samples
    complete = [detect(image).complete for image in images]
    assert sum(complete) >= len(complete) - 1, complete


def test_samples_are_the_faces_their_latents_stand_for(samples):
    """Trained by regression onto renders of target_params(z): a sample's landmarks sit near
    those of the face its z stands for (z ~ N(0, I) gives the world's distribution)."""
    z, images = samples
    errors = []
    for latent, image in zip(z, images, strict=True):
        found = detect(image)
        if found.complete:
            errors.append(
                np.linalg.norm(found.array() - landmark_array(target_params(latent)), axis=1)
            )
    assert np.median(np.concatenate(errors)) < 4.0
