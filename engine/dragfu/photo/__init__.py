"""Edits on photos: the region sent to the model, and the edit carried back to the photo's pixels.

- alignment.py: a similarity transform (scale, rotation, shift) between the photo and the model's
  frame; found from the model's mean image (a coarse template search) or given by the user.
- motion.py: the dense motion field between the projection and the dragged image, and the
  residual the motion cannot explain (new content).
- paste.py: the photo warped by that field at its own resolution (its grain carried along), the
  generator's change added only where motion cannot explain it; bit-identical outside the region
  that may move.
"""

from dragfu.photo.alignment import Similarity, fit_similarity, search_alignment
from dragfu.photo.frame import PhotoFrame, choose_alignment
from dragfu.photo.motion import motion_field, unexplained_change
from dragfu.photo.paste import PhotoEdit, paste_edit

__all__ = [
    "PhotoEdit",
    "PhotoFrame",
    "Similarity",
    "choose_alignment",
    "fit_similarity",
    "motion_field",
    "paste_edit",
    "search_alignment",
    "unexplained_change",
]
