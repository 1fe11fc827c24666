"""GAN inversion for existing images: W / W+ projection, pivotal tuning, projection cache.

from dragfu.project import project, ProjectSettings, save_projection, load_projection
p = project(G, image_uint8)          # p.ws [1, num_ws, w_dim], p.generator (tuned copy), p.psnr ...
save_projection(p, "face.safetensors")
p = ProjectionCache().get_or_project(G, image_uint8)   # at once when seen before
"""

from dragfu.project.cache import ProjectionCache, default_cache_dir
from dragfu.project.losses import perceptual_kind
from dragfu.project.projector import (
    Projection,
    ProjectProgress,
    StageResult,
    apply_delta,
    model_fingerprint,
    project,
)
from dragfu.project.settings import ProjectSettings
from dragfu.project.storage import load_projection, save_projection

__all__ = [
    "ProjectProgress",
    "ProjectSettings",
    "Projection",
    "ProjectionCache",
    "StageResult",
    "apply_delta",
    "default_cache_dir",
    "load_projection",
    "model_fingerprint",
    "perceptual_kind",
    "project",
    "save_projection",
]
