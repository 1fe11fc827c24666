"""A projected photo crop: how it maps to the model's frame, and how an edit goes back to it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dragfu.errors import BadInputError
from dragfu.photo.alignment import Similarity, sample_model_frame, search_alignment
from dragfu.photo.paste import PhotoEdit, paste_edit, paste_render

Point = tuple[float, float]


def choose_alignment(
    image: np.ndarray,
    model_size: tuple[int, int],
    requested: str | dict[str, Any],
    points: Sequence[Point],
    mean_image: Callable[[], np.ndarray | None],
) -> tuple[Similarity, list[str]]:
    """The alignment a projection request asked for, and notes for the user.

    "crop": the whole image, centred, one scale (the model's frame may reach past its shorter
    side, where the edge pixels continue). "auto": searched near the drag points against the
    model's mean image; the crop when nothing there looks like the model's subject.
    """
    height, width = image.shape[:2]
    if isinstance(requested, dict):
        return Similarity.from_dict(requested, model_size), []
    crop = Similarity.for_box(0, 0, width, height, model_size)
    if requested == "crop":
        return crop, []
    mean = mean_image()
    if mean is None:
        return crop, ["this engine cannot align automatically: the whole crop was used"]
    match = search_alignment(image, mean, points)
    if match is None:
        return crop, [
            "nothing near the drag points looks like the model's subject: the whole crop was used"
        ]
    return match.alignment, []


@dataclass
class PhotoFrame:
    """photo: the client's image (uint8 [h, w, 3]); alignment: model frame -> photo; before:
    the model's image of the latent the next drag starts from."""

    photo: np.ndarray
    alignment: Similarity
    before: np.ndarray

    def model_image(self) -> np.ndarray:
        return sample_model_frame(self.photo, self.alignment)

    def model_weight(self, weight: np.ndarray | None) -> np.ndarray | None:
        if weight is None:
            return None
        level = np.clip(np.asarray(weight, dtype=np.float32), 0.0, 1.0)
        return sample_model_frame(level, self.alignment)

    def to_model(self, points: Sequence[Point], what: str) -> list[Point]:
        model = self.alignment.to_model(points) if len(points) else np.zeros((0, 2))
        width, height = self.alignment.model_size
        for index, (x, y) in enumerate(model):
            if not (0 <= x <= width and 0 <= y <= height):
                raise BadInputError(
                    f"{what} {index + 1} lies outside the region the model sees "
                    f"({x:.1f}, {y:.1f} in its {width}x{height} frame)"
                )
        return [(float(x), float(y)) for x, y in model]

    def to_client(self, points: Sequence[Point]) -> list[Point]:
        if not len(points):
            return []
        return [(float(x), float(y)) for x, y in self.alignment.to_photo(points)]

    def model_mask(self, mask: np.ndarray) -> np.ndarray:
        """The movable region in the model's frame (bool [H, W])."""
        level = np.asarray(mask).astype(np.uint8) * 255 if mask.dtype == bool else mask
        return sample_model_frame(level, self.alignment, nearest=True) >= 128

    def paste(self, after: np.ndarray, mask: np.ndarray | None, mode: str) -> PhotoEdit:
        if mode == "render":
            return paste_render(self.photo, self.alignment, after, mask)
        return paste_edit(self.photo, self.alignment, self.before, after, mask)

    def after_edit(self, edit: PhotoEdit, after: np.ndarray) -> PhotoFrame:
        """The frame a further drag starts from: the edited photo, the dragged image."""
        return PhotoFrame(edit.image, self.alignment, after)
