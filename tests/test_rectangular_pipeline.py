"""Rectangular generators (StyleGAN-Human's `square=False`, H x H/2) through everything around the
drag engine: projection (W x H targets, storage, cache, LPIPS size), the protocol server (sizes
as [W, H], points and masks checked in W x H), and `dragfu drag` / `dragfu project` on the CLI.

The tiny rectangular generator here is 32 high and 16 wide: W x H = 16 x 32."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from PIL import Image

from dragfu.cli.main import main
from dragfu.models import save_generator
from dragfu.models.seeds import to_uint8, ws_from_seed
from dragfu.project import (
    ProjectionCache,
    ProjectSettings,
    load_projection,
    project,
    save_projection,
)
from dragfu.project.losses import LpipsScriptLoss, lpips_size, noise_autocorrelation
from dragfu.project.projector import prepare_target
from dragfu.protocol.frames import Part, encode_frame, numpy_array, numpy_part, read_all
from dragfu.protocol.server import EngineBackend, Server
from tests.conftest import make_tiny_generator

W, H = 16, 32
QUICK = ProjectSettings(
    w_steps=3, wplus_steps=2, tune_steps=2, w_avg_samples=100, perceptual="fallback"
)


@pytest.fixture(scope="module")
def rect():
    return make_tiny_generator(square=False, seed=5)


@pytest.fixture(scope="module")
def rect_model(rect, tmp_path_factory):
    return save_generator(rect, tmp_path_factory.mktemp("rect") / "rect.safetensors")


def picture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth RGB picture (gradients + a blob), uint8 [height, width, 3]."""
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    blob = np.exp(-((x - 0.4) ** 2 + (y - 0.7) ** 2) / 0.02)
    rng = np.random.default_rng(seed)
    rgb = np.stack([x, y, blob], axis=2) * 200 + rng.uniform(0, 30, (height, width, 3))
    return rgb.clip(0, 255).astype(np.uint8)


# --- projection --------------------------------------------------------------------------------


def test_model_size_is_width_height(rect):
    assert rect.image_size == (W, H)
    assert make_tiny_generator().image_size == (32, 32)


@pytest.mark.parametrize("size", [(W, H), (40, 50), (64, 24)])  # (width, height)
def test_prepare_target_resizes_to_width_by_height(rect, size):
    width, height = size
    mask = np.zeros((height, width), np.float32)
    mask[height // 4 :, : width // 2] = 1.0
    rgb, weight = prepare_target(rect, picture(width, height), mask, use_alpha=True)
    assert rgb.shape == (H, W, 3) and weight.shape == (H, W)
    # The weighted part stays where it was: the lower left of the picture.
    assert weight[H // 2 :, : W // 4].min() > 0.9 and weight[:, W * 3 // 4 :].max() < 0.1


@pytest.mark.parametrize("size", [(W, H), (40, 50)])
def test_projection_gives_a_latent_and_a_height_by_width_reconstruction(rect, size):
    image = picture(*size)
    result = project(rect, image, settings=QUICK)
    assert tuple(result.ws.shape) == (1, rect.num_ws, rect.w_dim)
    assert result.reconstruction.shape == (H, W, 3) and result.target.shape == (H, W, 3)
    assert set(result.stages) == {"w", "w+", "tune"} and np.isfinite(result.psnr)
    with torch.no_grad():  # the reconstruction is what the (tuned) generator draws at ws
        drawn = to_uint8(result.generator.synthesis(result.ws, noise_mode="const"))
    assert np.array_equal(drawn, result.reconstruction)


def test_projection_with_a_weight_mask_and_alpha(rect):
    rgba = np.concatenate([picture(24, 40), np.full((40, 24, 1), 255, np.uint8)], axis=2)
    rgba[:10, :, 3] = 0  # the top rows do not count
    mask = np.ones((40, 24), np.float32)
    result = project(rect, rgba, weight_mask=mask, settings=QUICK)
    assert result.reconstruction.shape == (H, W, 3)
    # What is transparent does not count: other colours there give the same projection (rows
    # far enough from the opaque ones that resizing to 16 x 32 does not blend them in)...
    hidden = rgba.copy()
    hidden[:2, :, :3] = 255 - hidden[:2, :, :3]
    same = project(rect, hidden, weight_mask=mask, settings=QUICK)
    # ...and the same change where the picture is opaque gives another one.
    shown = rgba.copy()
    shown[20:22, :, :3] = 255 - shown[20:22, :, :3]
    other = project(rect, shown, weight_mask=mask, settings=QUICK)
    hidden_change = float((same.ws - result.ws).abs().max())
    shown_change = float((other.ws - result.ws).abs().max())
    assert hidden_change < 0.1 * shown_change, (hidden_change, shown_change)


def test_projection_storage_and_cache_keep_the_rectangular_reconstruction(rect, tmp_path):
    image = picture(20, 44)
    cache = ProjectionCache(tmp_path / "cache")
    first = cache.get_or_project(rect, image, settings=QUICK)
    again = cache.get_or_project(rect, image, settings=QUICK)
    assert not first.cached and again.cached
    assert again.reconstruction.shape == (H, W, 3)
    assert np.array_equal(again.reconstruction, first.reconstruction)
    assert torch.equal(again.ws, first.ws)
    path = save_projection(first, tmp_path / "p.safetensors")
    loaded = load_projection(path, rect)
    assert np.array_equal(loaded.reconstruction, first.reconstruction)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
        assert (meta["img_resolution"], meta["img_width"]) == (str(H), str(W))
        stored = handle.get_tensor("reconstruction")
    # A stored reconstruction of the wrong shape is not trusted: it is drawn again.
    from safetensors.torch import save_file

    tensors = {"ws": first.ws, "reconstruction": stored.permute(1, 0, 2).contiguous()}
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=meta)
    redrawn = load_projection(tmp_path / "bad.safetensors", rect)
    assert redrawn.reconstruction.shape == (H, W, 3)


def test_noise_regulariser_on_rectangular_maps(rect):
    maps = [b for n, b in rect.named_buffers() if n.endswith("noise_const")]
    assert {tuple(m.shape) for m in maps} >= {(4, 2), (32, 16)}
    value = noise_autocorrelation([m.clone().requires_grad_(True) for m in maps])
    assert torch.isfinite(value) and value >= 0


def test_lpips_keeps_the_aspect_ratio():
    assert lpips_size(1024, 1024) == (256, 256)  # NVIDIA's projector: 256x256 at most
    assert lpips_size(512, 256) == (256, 128)  # StyleGAN-Human: not squashed to a square
    assert lpips_size(256, 128) == (256, 128) and lpips_size(32, 16) == (32, 16)
    assert lpips_size(384, 512) == (192, 256)
    seen = []

    def net(x, resize_images, return_lpips):
        seen.append(tuple(x.shape[-2:]))
        return x.mean(dim=(2, 3))

    target = torch.zeros(1, 3, 512, 256)
    loss = LpipsScriptLoss(net, target, None)
    loss(torch.ones(1, 3, 512, 256))
    assert seen == [(256, 128), (256, 128)]


# --- the protocol server -----------------------------------------------------------------------


class InProcess:
    """The real server and engine backend, each request run synchronously on this thread."""

    def __init__(self):
        self.frames = []
        self.server = Server(EngineBackend("cpu"), self._write, idle_timeout=0)

    def _write(self, data: bytes) -> None:
        self.frames.extend(read_all(data))

    def request(self, header: dict, parts: list[Part] | None = None):
        self.frames.clear()
        self.server.dispatch(read_all(encode_frame(header, parts))[0])
        while self.server._queued:
            job = self.server._running = self.server._queued.popleft()
            self.server._run_job(job)
            self.server._running = None
        answer = self.frames[-1]
        assert answer.id == header["id"] and answer.type in ("result", "error")
        return answer


@pytest.fixture
def engine(monkeypatch, tmp_path):
    monkeypatch.setenv("DRAGFU_CACHE_DIR", str(tmp_path / "cache"))
    return InProcess()


def test_server_reports_width_height_and_drags_in_the_rectangular_frame(engine, rect_model):
    model = str(rect_model)
    loaded = engine.request({"type": "load_model", "id": "l", "model": model})
    assert loaded.type == "result" and loaded.header["resolution"] == [W, H]
    # A seed drag: the image is the model's own W x H output; y = 26 lies beyond the width.
    drag = {"type": "drag", "id": "d", "model": model, "seed": 1, "handles": [[8, 26]],
            "targets": [[9, 22]], "max_steps": 2, "output": "array"}  # fmt: skip
    mask = np.zeros((H, W), np.uint8)
    mask[16:, :] = 255
    result = engine.request(drag, [numpy_part("mask", mask)])
    assert result.type == "result", result.header
    assert result.header["size"] == [W, H] and result.header["model_size"] == [W, H]
    assert numpy_array(result.parts["image"]).shape == (H, W, 3)
    x, y = result.header["points"][0]
    assert 0 <= x <= W and 0 <= y <= H
    # The same drag where nothing can move (lr 0, whole-pixel tracking): the point is found where
    # it was, (8, 26) in W x H, not transposed nor clamped into a square.
    still = engine.request(
        {**drag, "id": "s", "options": {"lr": 0.0, "subpixel_tracking": False}},
        [numpy_part("mask", mask)],
    )
    assert still.type == "result", still.header
    assert still.header["points"] == [[8.0, 26.0]]
    # Points and masks of a square (or transposed) frame are refused.
    outside = engine.request({**drag, "id": "o", "handles": [[20, 5]], "targets": [[8, 5]]})
    assert outside.type == "error" and outside.header["code"] == "invalid_points"
    assert "outside the 16x32 image" in outside.header["message"]
    transposed = engine.request({**drag, "id": "t"}, [numpy_part("mask", mask.T.copy())])
    assert transposed.type == "error" and transposed.header["code"] == "bad_request"
    assert "'mask' is 32x16 but the image it refers to is 16x32" in transposed.header["message"]


def test_server_projects_a_crop_of_any_size_and_drags_on_it(engine, rect_model):
    model = str(rect_model)
    crop = picture(20, 44)  # W x H = 20 x 44: neither the model's size nor its exact aspect
    settings = {"w_steps": 2, "wplus_steps": 1, "tune_steps": 1, "w_avg_samples": 100,
                "perceptual": "fallback"}  # fmt: skip
    projected = engine.request(
        {"type": "project", "id": "p", "model": model, "cache": False, "output": "array",
         "settings": settings},
        [numpy_part("image", crop), numpy_part("weight_mask", np.full((44, 20), 255, np.uint8))],
    )  # fmt: skip
    assert projected.type == "result", projected.header
    assert projected.header["size"] == [20, 44] and projected.header["model_size"] == [W, H]
    assert numpy_array(projected.parts["image"]).shape == (44, 20, 3)
    mask = np.zeros((44, 20), np.uint8)
    mask[20:, :] = 255
    dragged = engine.request(
        {"type": "drag", "id": "d", "projection_id": projected.header["projection_id"],
         "handles": [[10, 38]], "targets": [[12, 33]], "max_steps": 2, "output": "array"},
        [numpy_part("mask", mask)],
    )  # fmt: skip
    assert dragged.type == "result", dragged.header
    assert dragged.header["size"] == [20, 44] and dragged.header["model_size"] == [W, H]
    assert numpy_array(dragged.parts["image"]).shape == (44, 20, 3)
    # Where nothing can move, the point comes back where it was in the crop's own coordinates
    # (the crop is 20 x 44, the model 16 x 32: a wrong scale or order would move it).
    still = engine.request(
        {"type": "drag", "id": "s", "projection_id": projected.header["projection_id"],
         "handles": [[10, 38]], "targets": [[12, 33]], "max_steps": 2, "output": "array",
         "options": {"lr": 0.0, "subpixel_tracking": False}},
        [numpy_part("mask", mask)],
    )  # fmt: skip
    assert still.type == "result", still.header
    assert np.allclose(still.header["points"], [[10, 38]], atol=1e-4), still.header["points"]


# --- the CLI -----------------------------------------------------------------------------------


def test_cli_drag_writes_a_width_by_height_png(rect, rect_model, tmp_path, capsys):
    out = tmp_path / "dragged.png"
    mask = np.zeros((H, W), np.uint8)
    mask[14:, :] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert main(["drag", "--model", str(rect_model), "--seed", "3", "--drag", "8.5,26.5:8.5,22.5",
                 "--mask", str(tmp_path / "mask.png"), "--steps", "2", "--out", str(out),
                 "--device", "cpu", "--json"]) == 0  # fmt: skip
    document = json.loads(capsys.readouterr().out)
    assert document["targets"] == [[8.5, 22.5]] and document["steps"] == 2
    assert Image.open(out).size == (W, H)  # PIL: (width, height)
    x, y = document["points"][0]
    assert 0 <= x <= W and 0 <= y <= H


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--drag", "20,5:8,5"], "handle 1 at (20, 5) is outside the 16x32 image"),
        (["--drag", "8,5:8,40"], "target 1 at (8, 40) is outside the 16x32 image"),
        (["--drag", "8,5:8,9", "--mask", "{square}"], "is 32x32, the output is 16x32"),
    ],
)
def test_cli_drag_points_outside_the_rectangle_are_one_line_errors(
    rect_model, tmp_path, capsys, extra, message
):
    square = tmp_path / "square.png"
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(square)
    extra = [part.format(square=square) for part in extra]
    code = main(["drag", "--model", str(rect_model), "--out", str(tmp_path / "o.png"),
                 "--device", "cpu", *extra])  # fmt: skip
    error = capsys.readouterr().err
    assert code == 2 and message in error
    assert len(error.strip().splitlines()) == 1 and "Traceback" not in error


@pytest.fixture
def static_drag(monkeypatch):
    """The CLI's drag with lr 0 and whole-pixel tracking: nothing moves, so each point must come
    back exactly where it was given, through the CLI's coordinate mapping both ways."""
    import dragfu.cli.drag as cli_drag
    import dragfu.photo.pipeline as photo_pipeline  # `dragfu drag IMAGE` drags through it

    real = cli_drag.drag
    static = functools.partial(real, lr=0.0, subpixel_tracking=False)
    monkeypatch.setattr(cli_drag, "drag", static)
    monkeypatch.setattr(photo_pipeline, "drag", static)


def test_cli_drag_reports_points_in_the_width_by_height_frame(
    rect_model, tmp_path, capsys, static_drag
):
    out = tmp_path / "dragged.png"
    assert main(["drag", "--model", str(rect_model), "--seed", "3", "--drag", "8.5,26.5:8.5,22.5",
                 "--drag", "3.5,5.5:6.5,5.5", "--steps", "2", "--out", str(out), "--device", "cpu",
                 "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["points"] == [[8.5, 26.5], [3.5, 5.5]]


@pytest.fixture
def quick_default_projection(monkeypatch, tmp_path):
    """The CLI projects with the default settings: make them quick, and the cache a temp dir."""
    import dragfu.project.cache as cache_module

    quick = functools.partial(
        ProjectSettings, w_steps=2, wplus_steps=1, tune_steps=1, w_avg_samples=100,
        perceptual="fallback",
    )  # fmt: skip
    monkeypatch.setattr(cache_module, "ProjectSettings", quick)
    monkeypatch.setenv("DRAGFU_CACHE_DIR", str(tmp_path / "cache"))


def test_cli_drag_on_an_image_keeps_its_size(
    rect_model, tmp_path, capsys, quick_default_projection
):
    photo = tmp_path / "photo.png"
    Image.fromarray(picture(24, 40)).save(photo)  # 24 wide, 40 high
    out = tmp_path / "out.png"
    assert main(["drag", str(photo), "--model", str(rect_model), "--drag", "12,36:12,31",
                 "--steps", "2", "--out", str(out), "--device", "cpu", "--json"]) == 0  # fmt: skip
    document = json.loads(capsys.readouterr().out)
    assert Image.open(out).size == (24, 40)
    x, y = document["points"][0]  # in the image's coordinates
    assert 0 <= x <= 24 and 0 <= y <= 40


def test_cli_drag_on_an_image_reports_points_in_its_coordinates(
    rect_model, tmp_path, capsys, quick_default_projection, static_drag
):
    photo = tmp_path / "photo.png"
    Image.fromarray(picture(24, 40)).save(photo)  # 24 x 40 on a 16 x 32 model
    assert main(["drag", str(photo), "--model", str(rect_model), "--drag", "12,36:12,31",
                 "--steps", "2", "--out", str(tmp_path / "o.png"), "--device", "cpu", "--json"]) == 0  # fmt: skip
    assert np.allclose(json.loads(capsys.readouterr().out)["points"], [[12, 36]], atol=1e-4)


def test_cli_project_reports_the_model_size(rect_model, tmp_path, capsys):
    photo = tmp_path / "photo.png"
    Image.fromarray(picture(30, 50)).save(photo)
    out, preview = tmp_path / "latent.safetensors", tmp_path / "preview.png"
    assert main(["project", str(photo), "--model", str(rect_model), "--steps", "2",
                 "--wplus-steps", "1", "--no-tune", "--no-cache", "--perceptual", "fallback",
                 "--out", str(out), "--preview", str(preview), "--device", "cpu", "--json"]) == 0  # fmt: skip
    document = json.loads(capsys.readouterr().out)
    assert document["model_size"] == [W, H] and document["resolution"] == H
    assert Image.open(preview).size == (W, H)


def test_seed_images_are_what_the_server_renders(rect, rect_model, tmp_path):
    # The protocol's seed drag starts from the same image `dragfu sample` writes...
    with torch.no_grad():
        image = EngineBackend("cpu").render(rect, ws_from_seed(rect, 4))
    assert image.shape == (H, W, 3)
    out = tmp_path / "sample.png"
    assert main(["sample", "--model", str(rect_model), "--seed", "4", "--out", str(out),
                 "--device", "cpu", "--quiet"]) == 0  # fmt: skip
    assert np.array_equal(np.asarray(Image.open(out)), image)
    # ...which is NVIDIA's: z = RandomState(seed).randn(1, z_dim), psi 0.7, constant noise, and
    # uint8 = clamp(img * 127.5 + 128, 0, 255).
    z = torch.from_numpy(np.random.RandomState(4).randn(1, rect.z_dim)).float()
    with torch.no_grad():
        img = rect(z, None, truncation_psi=0.7, noise_mode="const")
    expected = (img[0] * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(image, expected)
