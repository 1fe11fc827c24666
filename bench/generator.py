"""Generator speed: forward, and forward+backward to w, per image; full synthesis versus stopping
at the 128x128 feature block (what each DragGAN step needs). Random weights, 512 config by default."""

from __future__ import annotations

import argparse

import torch

from bench.timing import time_call
from dragfu.device import choose_device
from dragfu.models import Generator, load_generator

CONFIGS = {
    "512": dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=512, channel_base=32768, channel_max=512,
                mapping_kwargs={"num_layers": 8}, conv_clamp=256),
    "1024": dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, channel_base=32768, channel_max=512,
                 mapping_kwargs={"num_layers": 8}, conv_clamp=256),
}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default="512", help="512, 1024, or a model name/path (e.g. toy)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )


def run(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = choose_device(args.device)
    if args.config in CONFIGS:
        torch.manual_seed(0)
        G = Generator(**CONFIGS[args.config]).eval().to(device)
    else:
        G = load_generator(args.config, device)
    blocks = G.synthesis.block_resolutions
    feature_res = blocks[min(5, len(blocks) - 1)]
    ws = G.mapping(torch.randn(1, G.z_dim, device=device)).detach()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.precision)

    def forward(stop_at):
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            G.synthesis.run(ws, stop_at=stop_at, with_rgb=stop_at is None)

    def forward_backward(stop_at):
        latent = ws.clone().requires_grad_(True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            features, image = G.synthesis.run(latent, stop_at=stop_at, with_rgb=stop_at is None)
        (image if image is not None else features).float().square().mean().backward()

    results = {}
    for name, stop_at in (("full", None), (f"to_{feature_res}", feature_res)):
        results[name] = {
            "forward": time_call(lambda s=stop_at: forward(s), device, args.repeats),
            "forward_backward": time_call(
                lambda s=stop_at: forward_backward(s), device, args.repeats
            ),
        }
    full = results["full"]["forward_backward"]["median_ms"]
    part = results[f"to_{feature_res}"]["forward_backward"]["median_ms"]
    return {
        "config": args.config,
        "device": str(device),
        "precision": args.precision,
        "img_resolution": G.img_resolution,
        "feature_resolution": feature_res,
        "results": results,
        "forward_backward_ratio": round(part / full, 3),
    }
