"""StyleGAN2 generator and checkpoint loading."""

from dragfu.models.checkpoint import convert_checkpoint, load_generator, save_generator
from dragfu.models.stylegan2 import Generator

__all__ = ["Generator", "convert_checkpoint", "load_generator", "save_generator"]
