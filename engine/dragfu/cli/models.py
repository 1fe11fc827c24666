"""`dragfu models list|download|verify|remove`: the model registry and the local models folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dragfu import paths
from dragfu.cli.common import print_json
from dragfu.errors import LicenseNotAcceptedError, UnknownModelError
from dragfu.models import download, registry


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models", help="list, download, verify and remove models",
        description="Models live in the models folder ($DRAGFU_MODELS_DIR, default "
        f"{paths.models_dir()}); `toy` is embedded in the engine.",
    )  # fmt: skip
    parser.add_argument("--models-dir", type=Path, default=None, help="models folder to use")
    actions = parser.add_subparsers(dest="models_command", metavar="ACTION")

    listing = actions.add_parser("list", help="every known model, and which are here")
    listing.add_argument("--json", action="store_true", help="print JSON for scripts")
    listing.add_argument("--present", action="store_true", help="only models present locally")

    get = actions.add_parser("download", help="download a model by name or URL")
    get.add_argument("model", help="a name from `dragfu models list`, or an http(s) URL")
    get.add_argument(
        "--accept-license", action="store_true",
        help="accept the model's licence (NVIDIA's weights: non-commercial use only)",
    )  # fmt: skip
    get.add_argument("--sha256", help="expected sha256 of the file (URL downloads)")
    get.add_argument("--name", help="name for a model downloaded by URL (default: file stem)")
    get.add_argument("--no-convert", action="store_true", help="keep the .pkl, skip safetensors")
    get.add_argument("--keep-source", action="store_true", help="keep the .pkl after conversion")
    get.add_argument("--force", action="store_true", help="download again even if present")
    get.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for data")
    get.add_argument("--retries", type=int, default=4, help="tries after a failure (resuming)")
    get.add_argument("--json", action="store_true", help="print JSON for scripts")
    get.add_argument("--quiet", action="store_true", help="print nothing but errors")

    check = actions.add_parser("verify", help="check local files against known sha256 hashes")
    check.add_argument("models", nargs="*", help="names (default: every model present)")
    check.add_argument(
        "--record", action="store_true",
        help="remember the sha256 of files with none known (files you put there by hand)",
    )  # fmt: skip
    check.add_argument("--json", action="store_true", help="print JSON for scripts")

    drop = actions.add_parser("remove", help="delete a downloaded model's files")
    drop.add_argument("model")
    drop.add_argument("--json", action="store_true", help="print JSON for scripts")

    parser.set_defaults(func=run, models_parser=parser)


def run(args: argparse.Namespace) -> int:
    command = getattr(args, "models_command", None)
    if command is None:
        args.models_parser.print_help()
        return 2
    return {"list": _list, "download": _download, "verify": _verify, "remove": _remove}[command](
        args
    )


def _models_dir(args: argparse.Namespace) -> Path:
    return args.models_dir.expanduser() if args.models_dir else paths.models_dir()


def _short_license(info: registry.ModelInfo) -> str:
    if info.license.startswith("NVIDIA"):
        return "NVIDIA NC"
    if info.license.startswith("as published"):
        return "publisher's"
    return info.license.split(" ")[0].rstrip(":;,")


def _list(args: argparse.Namespace) -> int:
    folder = _models_dir(args)
    models = registry.all_models(folder)
    rows = [registry.summary(info, folder) for info in models.values()]
    if args.present:
        rows = [row for row in rows if row["present"]]
    if args.json:
        print_json({"models_dir": str(folder), "models": rows})
        return 0
    header = ("name", "size (w x h)", "here", "licence", "sha256", "title")
    table = [header]
    for row in rows:
        info = models[row["name"]]
        size = "-" if info.kind != "stylegan2" else f"{info.resolution[0]} x {info.resolution[1]}"
        known = "published" if info.sha256 else ("recorded" if row["recorded_sha256"] else "-")
        here = "yes" if row["present"] else ("-" if info.url or info.embedded else "manual")
        if info.embedded and row["present"]:
            here = "embedded"
        table.append((info.name, size, here, _short_license(info), known, info.title))
    widths = [max(len(r[i]) for r in table) for i in range(len(header) - 1)]
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        print("  ".join(cells + [row[-1]]).rstrip())
    print(f"\nmodels folder: {folder}   (download: dragfu models download NAME)")
    return 0


def _ask_license(info: registry.ModelInfo) -> bool:
    """On a terminal, show the licence and ask; elsewhere acceptance needs --accept-license."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    print(download.license_notice(info), file=sys.stderr)
    print("Its weights may be used for non-commercial research only.", file=sys.stderr)
    answer = input("Accept this licence? [y/N] ").strip().lower()
    return answer in ("y", "yes")


def _download(args: argparse.Namespace) -> int:
    folder = _models_dir(args)
    say = (
        (lambda *a: None) if (args.quiet or args.json) else (lambda *a: print(*a, file=sys.stderr))
    )
    options = dict(
        models_dir=folder, accept=args.accept_license, sha256=args.sha256, name=args.name,
        convert=not args.no_convert, keep_source=args.keep_source, force=args.force,
        timeout=args.timeout, retries=args.retries, progress=not (args.quiet or args.json),
    )  # fmt: skip
    try:
        report = download.download_model(args.model, **options)
    except LicenseNotAcceptedError:
        info = download.find_model(args.model, folder)
        if args.accept_license or not _ask_license(info):
            raise
        options["accept"] = True
        report = download.download_model(args.model, **options)
    for warning in report.warnings:
        say(f"warning: {warning}")
    if args.json:
        print_json(
            {
                "name": report.name, "status": report.status, "path": str(report.path),
                "sha256": report.sha256, "hash_source": report.hash_source,
                "converted": report.converted, "warnings": report.warnings,
            }
        )  # fmt: skip
    elif not args.quiet:
        if report.status == "downloaded":
            checked = {"published": "matches the published sha256", "recorded": "matches the recorded sha256", "none": "recorded as this model's sha256"}[report.hash_source]  # fmt: skip
            print(
                f"{report.name}: downloaded to {report.path} (sha256 {report.sha256[:12]}... {checked})"
            )
        elif report.status == "present":
            print(
                f"{report.name}: already present at {report.path} (use --force to download again)"
            )
        else:
            print(f"{report.name}: embedded in the engine, nothing to download")
    return 0


def _verify(args: argparse.Namespace) -> int:
    folder = _models_dir(args)
    models = registry.all_models(folder)
    names = args.models or [name for name, info in models.items() if info.present(folder)]
    results = []
    for name in names:
        if name not in models:
            registry.resolve(name, folder)  # raises with close names
            raise UnknownModelError(f"unknown model '{name}'")
        info = models[name]
        checks = download.verify_model(info, folder)
        unknown = [c for c in checks if c.status == "unknown"]
        if args.record and unknown and not info.embedded:
            if not any(c.status == "mismatch" for c in checks):
                registry.record_local_hashes(name, {c.path.name: c.sha256 for c in unknown}, folder)
                checks = download.verify_model(info, folder)
        if not checks:
            results.append({"name": name, "status": "missing", "files": []})
            continue
        statuses = {check.status for check in checks}
        status = (
            "mismatch" if "mismatch" in statuses else ("unknown" if "unknown" in statuses else "ok")
        )
        files = [
            {"path": str(c.path), "sha256": c.sha256, "expected": c.expected,
             "source": c.source, "status": c.status}
            for c in checks
        ]  # fmt: skip
        results.append({"name": name, "status": status, "files": files})
    if args.json:
        print_json({"models_dir": str(folder), "results": results})
    else:
        for result in results:
            line = f"{result['name']}: {result['status']}"
            for file in result["files"]:
                if file["status"] == "mismatch":
                    line += f"\n  {file['path']}: sha256 {file['sha256'][:16]}... expected {file['expected'][:16]}..."
                elif file["status"] == "unknown":
                    line += f"\n  {file['path']}: no known sha256 (`dragfu models verify {result['name']} --record` remembers this one)"
            print(line)
        if not results:
            print(f"no models in {folder}")
    bad = [r["name"] for r in results if r["status"] in ("mismatch", "missing")]
    if bad and not args.json:
        print(
            f"{len(bad)} model(s) not as downloaded: `dragfu models download NAME --force` "
            "fetches a fresh copy",
            file=sys.stderr,
        )
    return 1 if bad else 0


def _remove(args: argparse.Namespace) -> int:
    folder = _models_dir(args)
    info = download.find_model(args.model, folder)
    removed = download.remove_model(info, folder)
    if args.json:
        print_json({"name": info.name, "removed": [str(p) for p in removed]})
    elif removed:
        for path in removed:
            print(f"removed {path}")
    else:
        print(f"{info.name}: no local files in {folder}")
    return 0
