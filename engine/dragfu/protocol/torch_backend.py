"""The real backend: dragfu.models, dragfu.project, dragfu.drag on one torch device."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from dragfu.protocol import messages as m
from dragfu.protocol.backend import DragOutcome, ProjectOutcome


class EngineBackend:
    """Calls the real engine: dragfu.models, dragfu.project, dragfu.drag, on one device."""

    def __init__(self, device: str | None = None) -> None:
        self.device_name = device

    @property
    def device(self):
        if not hasattr(self, "_device"):
            from dragfu.device import choose_device

            self._device = choose_device(self.device_name)
        return self._device

    def info(self) -> dict[str, Any]:
        import torch

        devices = [{"name": "cpu"}]
        if torch.cuda.is_available():
            for index in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(index)
                devices.append(
                    {
                        "name": f"cuda:{index}",
                        "title": props.name,
                        "memory_mb": props.total_memory // 2**20,
                    }
                )
        from dragfu.device import mps_available

        if mps_available():
            devices.append({"name": "mps"})
        models = []
        try:
            from dragfu.models import registry

            for info in registry.MODELS.values():
                if getattr(info, "kind", "stylegan2") != "stylegan2":
                    continue
                try:
                    present = bool(info.present())
                except Exception:  # a broken models dir must not break hello
                    present = False
                models.append(
                    {"name": info.name, "resolution": list(info.resolution), "present": present}
                )
        except ImportError:
            pass
        return {
            "devices": devices,
            "device": str(self.device),
            "torch": torch.__version__,
            "models": models,
        }

    def load_model(self, name: str) -> Any:
        from dragfu.models import load_generator

        return load_generator(name, self.device)

    def image_size(self, G: Any) -> tuple[int, int]:
        """(width, height) of the model's images: (R, R), or (R/2, R) for StyleGAN-Human."""
        return G.image_size

    def seed_ws(self, G: Any, seed: int, psi: float) -> Any:
        from dragfu.models.seeds import ws_from_seed

        return ws_from_seed(G, seed, psi)

    def render(self, G: Any, ws: Any) -> np.ndarray:
        import torch

        from dragfu.models.seeds import to_uint8

        with torch.no_grad():
            return to_uint8(G.synthesis(ws, noise_mode="const"))

    def mean_image(self, G: Any) -> np.ndarray:
        """The model's image of its mean latent: the average subject, which alignment looks for."""
        from dragfu.photo.pipeline import mean_image

        return mean_image(G)

    def project(
        self, G, image, weight_mask, settings, callback, cancel, cache=True
    ) -> ProjectOutcome:
        """Project (any size: the projection resamples to the model itself); with ``cache``, reuse
        and fill the on-disk projection cache, so re-projecting the same crop costs a lookup."""
        from dragfu.project import ProjectionCache, project

        kwargs: dict[str, Any] = {
            "weight_mask": weight_mask, "settings": self._project_settings(G, settings),
            "callback": callback, "cancel": cancel,
        }  # fmt: skip
        if cache:
            projection = ProjectionCache().get_or_project(G, image, **kwargs)
        else:
            projection = project(G, image, **kwargs)
        stats: dict[str, Any] = {
            name: round(float(getattr(projection, key)), 4)
            for key, name in (("psnr", "psnr"), ("ssim", "ssim"), ("seconds", "projection_seconds"))
            if isinstance(getattr(projection, key, None), int | float)
        }
        stats["cached"] = bool(getattr(projection, "cached", False))
        reconstruction = getattr(projection, "reconstruction", None)
        generator = getattr(projection, "generator", None) or G
        return ProjectOutcome(generator, projection.ws, reconstruction, stats)

    def save_latent(self, key: str, G: Any, latent: Any) -> None:
        """Keep a drag result (handlers.Latent with its PhotoFrame) on disk under ``key``."""
        from dragfu.project.latents import LatentStore

        alignment = latent.frame.alignment
        LatentStore().save(
            key, G, latent.generator, latent.ws, model=latent.model, photo=latent.frame.photo,
            before=latent.frame.before, size=latent.size,
            alignment={"scale": alignment.scale, "angle": alignment.angle,
                       "centre": list(alignment.centre)},
        )  # fmt: skip

    def load_latent(self, key: str, G: Any) -> Any:
        """The drag result kept under ``key`` for G (dragfu.project.latents.StoredLatent), or None."""
        from dragfu.project.latents import LatentStore

        return LatentStore().load(key, G)

    @staticmethod
    def _project_settings(G, settings: dict[str, Any]) -> Any:
        """The model's projection settings with the request's ``settings`` (same field names)."""
        from dragfu.errors import BadInputError
        from dragfu.project.settings import settings_for

        try:
            return settings_for(G, settings)
        except (TypeError, BadInputError) as error:
            raise m.ProtocolError("bad_request", f"bad projection 'settings': {error}") from None

    def drag(self, G, ws, handles, targets, *, waypoints, mask, method, max_steps, preview_every,
             callback, cancel, seed, options, stop=None, pins=None,
             preview_ready=None) -> DragOutcome:  # fmt: skip
        from dragfu.drag import DragSettings, drag

        # Extra drag settings by name (lr, r1, r2, lambda_fixed, stop_distance, precision, ...).
        reserved = {"method", "max_steps", "preview_every", "pins", "stop", "preview_ready"}
        known = {f.name for f in dataclasses.fields(DragSettings)} - reserved
        unknown = sorted(set(options) - known)
        if unknown:
            raise m.ProtocolError(
                "bad_request", f"unknown drag option(s) {unknown}; known: {sorted(known)}"
            )
        result = drag(
            G, ws, handles, targets, waypoints=waypoints, mask=mask, method=method, max_steps=max_steps,
            preview_every=preview_every, callback=callback, cancel=cancel, seed=seed, stop=stop,
            pins=pins or None, preview_ready=preview_ready, **options,
        )  # fmt: skip
        return DragOutcome(
            image=np.asarray(result.image),
            ws=result.ws,
            points=[(float(x), float(y)) for x, y in result.points],
            steps=int(result.steps),
            seconds=float(result.seconds),
            seconds_per_step=float(result.seconds_per_step),
            converged=bool(result.converged),
            stopped=bool(result.stopped),
            pins=[(float(x), float(y)) for x, y in result.pins],
        )


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError):
        return True
    try:
        import torch

        if isinstance(error, torch.cuda.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def free_memory() -> None:
    """Give cached device memory back after an out-of-memory error."""
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
