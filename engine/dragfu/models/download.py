"""Model downloads: HTTP(S) with resume, timeouts, retries, sha256 checks and atomic placement.

`fetch()` moves bytes: it writes `<dest>.part`, resumes it with a Range request after a dropped
connection or a timeout, checks the sha256, and renames it into place only when it is right (a
wrong file is deleted, never left where the engine could load it). Proxies come from the
environment (`http_proxy`, `https_proxy`, `no_proxy`), as urllib's default opener reads them.

`download_model()` is what `dragfu models download` runs: licence acceptance, the published or
recorded hash (or a warning when none is known, then the hash of this verified download is
recorded), conversion of NVIDIA pickles to safetensors, and the record in the user's registry.
"""

from __future__ import annotations

import http.client
import os
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dragfu import __version__, paths
from dragfu.errors import (
    CheckpointError,
    ChecksumError,
    DownloadError,
    DragfuError,
    LicenseNotAcceptedError,
    UnknownModelError,
)
from dragfu.models import registry, userdb
from dragfu.models.hashing import sha256_file
from dragfu.models.registry import ModelInfo

CHUNK = 1 << 16
#: Room left on the disk beyond the file itself (conversion output, other programs).
DISK_MARGIN = 64 << 20

ProgressCallback = Callable[[int, "int | None"], None]


class _Retryable(Exception):
    """A failure worth another try that resumes from the partial file."""


@dataclass
class FetchResult:
    path: Path
    sha256: str
    size: int
    attempts: int
    resumed: bool


def _free_bytes(folder: Path) -> int:
    """Free space on the disk that holds `folder` (its nearest existing ancestor)."""
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return shutil.disk_usage(probe).free


class _Progress:
    """tqdm on a terminal, a callback in tests, silence otherwise."""

    def __init__(self, progress: bool | ProgressCallback | None, label: str):
        self.callback = progress if callable(progress) else None
        self.bar = None
        self.label = label
        self.enabled = bool(progress) and not self.callback and sys.stderr.isatty()

    def start(self, done: int, total: int | None) -> None:
        if self.callback:
            self.callback(done, total)
        elif self.enabled:
            from tqdm import tqdm

            self.close()
            self.bar = tqdm(
                total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024,
                desc=self.label, file=sys.stderr, leave=False,
            )  # fmt: skip

    def update(self, done: int, total: int | None, step: int) -> None:
        if self.callback:
            self.callback(done, total)
        elif self.bar is not None:
            self.bar.update(step)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _open(url: str, start: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": f"dragfu/{__version__}"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    # build_opener() includes ProxyHandler with the environment's proxies and follows redirects
    # (the Range header travels with the redirected request).
    return urllib.request.build_opener().open(request, timeout=timeout)


def _fetch_once(url: str, part: Path, timeout: float, progress: _Progress) -> None:
    have = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, have, timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:
            return  # the partial file already holds everything; the hash check decides
        if error.code >= 500 or error.code in (408, 429):
            raise _Retryable(f"HTTP {error.code} {error.reason}") from error
        raise DownloadError(
            f"{url}: HTTP {error.code} {error.reason}",
            code="http_error",
            hint="check the name or URL; the publisher may have moved the file",
        ) from error
    except urllib.error.URLError as error:
        raise _Retryable(str(error.reason)) from error
    except (TimeoutError, ConnectionError, http.client.HTTPException) as error:
        raise _Retryable(str(error) or type(error).__name__) from error

    with response:
        resumed = have > 0 and response.status == 206
        if have and not resumed:
            have = 0  # the server ignored the Range request: start again from byte 0
        if resumed:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.replace(" ", "").startswith(f"bytes{have}-"):
                part.unlink()  # cannot tell where these bytes belong: start again
                raise _Retryable(f"server answered the resume with range '{content_range}'")
        length_header = response.headers.get("Content-Length")
        remaining = int(length_header) if length_header and length_header.isdigit() else None
        total = have + remaining if remaining is not None else None
        if remaining is not None:
            free = _free_bytes(part.parent)
            if free < remaining + DISK_MARGIN:
                raise DownloadError(
                    f"not enough disk space in {part.parent}: {remaining / 1e6:.0f} MB needed, "
                    f"{free / 1e6:.0f} MB free",
                    code="no_space",
                    hint="free some space, or set DRAGFU_MODELS_DIR to a bigger disk",
                )
        progress.start(have, total)
        received = 0
        try:
            with open(part, "ab" if resumed else "wb") as handle:
                while True:
                    # read1: whatever has arrived (so a stall loses nothing); a stalled
                    # server raises socket.timeout here after `timeout` seconds.
                    block = response.read1(CHUNK)
                    if not block:
                        break
                    handle.write(block)
                    received += len(block)
                    progress.update(have + received, total, len(block))
        except (TimeoutError, ConnectionError, http.client.HTTPException) as error:
            raise _Retryable(
                f"{error or type(error).__name__} after {have + received} bytes"
            ) from error
        if remaining is not None and received < remaining:
            raise _Retryable(f"connection dropped after {have + received} of {total} bytes")


def fetch(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    timeout: float = 30.0,
    retries: int = 4,
    retry_wait: float = 2.0,
    progress: bool | ProgressCallback | None = True,
) -> FetchResult:
    """Download `url` to `dest` (atomically); resume from `dest.part` if an earlier try left one.

    `timeout` bounds each connection attempt and each wait for data (a stalled server counts as
    a failed try); `retries` more tries follow a failure, each resuming where the last stopped.
    With `sha256`, a file with another hash is deleted and `ChecksumError` raised.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    resumed = part.exists() and part.stat().st_size > 0
    bar = _Progress(progress, dest.name)
    attempts = 0
    try:
        while True:
            attempts += 1
            try:
                _fetch_once(url, part, timeout, bar)
                break
            except _Retryable as error:
                if attempts > retries:
                    raise DownloadError(
                        f"download of {url} failed after {attempts} tries: {error}",
                        code="download_failed",
                        hint="check the network or proxy (http_proxy/https_proxy); "
                        "running the command again resumes the partial file",
                    ) from error
                resumed = resumed or (part.exists() and part.stat().st_size > 0)
                time.sleep(retry_wait * attempts)
    finally:
        bar.close()
    if not part.exists():
        raise DownloadError(f"download of {url} produced no file", code="download_failed")
    digest = sha256_file(part)
    if sha256 and digest.lower() != sha256.lower():
        part.unlink()
        raise ChecksumError(
            f"{url}: sha256 {digest[:16]}... is not the expected {sha256[:16]}...; file deleted",
            hint="the download was corrupted or the publisher changed the file; try again",
        )
    size = part.stat().st_size
    os.replace(part, dest)
    return FetchResult(path=dest, sha256=digest, size=size, attempts=attempts, resumed=resumed)


# ---------------------------------------------------------------------------------------------
# Model-level operations behind `dragfu models download|verify|remove`
# ---------------------------------------------------------------------------------------------


@dataclass
class DownloadReport:
    name: str
    status: str  # downloaded | present | embedded
    path: Path
    sha256: str | None = None
    hash_source: str = "none"  # published | recorded | none (first download: now recorded)
    converted: bool = False
    warnings: list[str] = field(default_factory=list)


def _is_url(text: str) -> bool:
    return urllib.parse.urlparse(text).scheme in ("http", "https")


def model_for_url(url: str, name: str | None = None, sha256: str | None = None) -> ModelInfo:
    """An ad-hoc registry entry for a model given by URL (kept in the user's registry file)."""
    source = urllib.parse.unquote(urllib.parse.urlparse(url).path.rstrip("/").rsplit("/", 1)[-1])
    if not source:
        raise DownloadError(
            f"cannot tell a file name from {url}", code="bad_url", hint="use --name"
        )
    stem, suffix = os.path.splitext(source)
    name = name or stem
    convertible = suffix.lower() in (".pkl", ".pt", ".pth")
    return ModelInfo(
        name=name,
        title=f"{source} (downloaded by URL)",
        resolution=(0, 0),
        url=url,
        sha256=sha256,
        license="unknown: as published at the URL",
        filename=f"{name}.safetensors" if convertible else source,
        notes="added with `dragfu models download URL`",
        noncommercial=False,
        source_names=(source,),
    )


def find_model(name_or_url: str, models_dir: Path | None = None, **url_options) -> ModelInfo:
    if _is_url(name_or_url):
        return model_for_url(name_or_url, **url_options)
    models = registry.all_models(models_dir)
    if name_or_url in models:
        return models[name_or_url]
    registry.resolve(name_or_url, models_dir)  # raises UnknownModelError with close names
    raise UnknownModelError(f"unknown model '{name_or_url}'")


def license_accepted(info: ModelInfo, models_dir: Path | None = None) -> bool:
    if not info.noncommercial:
        return True
    return info.license in registry.load_user_registry(models_dir)["accepted_licenses"]


def accept_license(info: ModelInfo, models_dir: Path | None = None) -> None:
    with userdb.editing(models_dir) as data:
        if info.license not in data["accepted_licenses"]:
            data["accepted_licenses"].append(info.license)


def license_notice(info: ModelInfo) -> str:
    where = f" ({info.license_url})" if info.license_url else ""
    return f"{info.name}: licence {info.license}{where}."


def _convert(source: Path, final: Path) -> list[Path]:
    """NVIDIA pickle -> safetensors + JSON config next to it, placed atomically; returns files."""
    try:
        from dragfu.models import convert_checkpoint
    except ImportError as error:
        raise CheckpointError(
            "this engine has no checkpoint converter (dragfu.models.convert_checkpoint)"
        ) from error
    tmp = final.with_name(f".{final.stem}.converting{final.suffix}")
    tmp_config = tmp.with_suffix(".json")
    try:
        convert_checkpoint(source, tmp)
        placed = [final]
        if tmp_config.exists():
            os.replace(tmp_config, final.with_suffix(".json"))
            placed.append(final.with_suffix(".json"))
        os.replace(tmp, final)
        return placed
    finally:
        for leftover in (tmp, tmp_config):
            if leftover.exists():
                leftover.unlink()


def download_model(
    name_or_url: str,
    *,
    models_dir: Path | None = None,
    accept: bool = False,
    sha256: str | None = None,
    name: str | None = None,
    convert: bool = True,
    keep_source: bool = False,
    force: bool = False,
    timeout: float = 30.0,
    retries: int = 4,
    retry_wait: float = 2.0,
    progress: bool | ProgressCallback | None = True,
) -> DownloadReport:
    models_dir = Path(models_dir) if models_dir is not None else paths.models_dir()
    info = find_model(
        name_or_url,
        models_dir,
        **({"name": name, "sha256": sha256} if _is_url(name_or_url) else {}),
    )
    if info.embedded:
        return DownloadReport(
            info.name, "embedded", info.path(models_dir), info.sha256, "published"
        )
    if info.present(models_dir) and not force:
        return DownloadReport(info.name, "present", info.path(models_dir))
    if not info.url:
        raise DownloadError(
            f"model '{info.name}' has no direct download URL",
            code="no_url",
            hint=info.notes or "download it by hand into " + str(models_dir),
        )
    if not license_accepted(info, models_dir):
        if not accept:
            raise LicenseNotAcceptedError(
                license_notice(info) + " Its weights may be used for non-commercial research only",
                hint="read the licence, then run again with --accept-license",
            )
        accept_license(info, models_dir)

    report = DownloadReport(info.name, "downloaded", info.path(models_dir))
    record = registry.load_user_registry(models_dir)["models"].get(info.name) or {}
    expected = sha256 or info.sha256 or record.get("source_sha256")
    report.hash_source = (
        "published" if (sha256 or info.sha256) else ("recorded" if expected else "none")
    )
    if expected is None:
        report.warnings.append(
            f"no published sha256 for {info.name}: the hash of this download is recorded "
            "and every later check compares against it"
        )
    source_name = info.source_filename or info.filename
    source = models_dir / source_name
    try:
        result = fetch(
            info.url, source, sha256=expected, timeout=timeout, retries=retries,
            retry_wait=retry_wait, progress=progress,
        )  # fmt: skip
    except ChecksumError as error:
        if report.hash_source == "recorded":
            error.hint = (
                "the file differs from your first download of it; if the publisher changed it, "
                f"`dragfu models remove {info.name}` forgets the old hash, then download again"
            )
        raise
    report.sha256 = result.sha256
    files = {source_name: result.sha256}

    final = models_dir / info.filename
    needs_conversion = info.kind == "stylegan2" and final.name != source_name
    if convert and needs_conversion:
        try:
            placed = _convert(source, final)
        except DragfuError as error:
            report.warnings.append(f"kept {source_name} unconverted: {error}")
            report.path = source
            if expected is None:
                # An unreadable file is not a verified download: do not trust its hash.
                report.warnings.append("hash not recorded: the file could not be checked")
                return report
        else:
            report.converted = True
            report.path = final
            for path in placed:
                files[path.name] = sha256_file(path)
            if not keep_source:
                source.unlink()
                files.pop(source_name)
    else:
        report.path = source
    registry.record_download(
        info.name, url=info.url, source_sha256=result.sha256, files=files,
        models_dir=models_dir, info=info,
    )  # fmt: skip
    return report


@dataclass
class FileCheck:
    path: Path
    sha256: str
    expected: str | None
    source: str  # published | recorded | none

    @property
    def status(self) -> str:
        if self.expected is None:
            return "unknown"
        return "ok" if self.expected.lower() == self.sha256.lower() else "mismatch"


def verify_model(info: ModelInfo, models_dir: Path | None = None) -> list[FileCheck]:
    """Hash every local file of a model and compare with the published or recorded sha256."""
    checks = []
    files = [p for p in info.candidates(models_dir) if p.is_file()]
    # An embedded model's config ships with the engine; its weights' hash is the one pinned.
    sidecars = (
        []
        if info.embedded
        else [p.with_suffix(".json") for p in files if p.suffix == ".safetensors"]
    )
    for path in files + [p for p in sidecars if p.is_file()]:
        expected, source = registry.expected_hash(info, path, models_dir)
        checks.append(FileCheck(path, sha256_file(path), expected, source))
    return checks


def remove_model(info: ModelInfo, models_dir: Path | None = None) -> list[Path]:
    """Delete a downloaded model's files (converted, sidecar, source, partial) and its record."""
    if info.embedded:
        raise DragfuError(f"'{info.name}' is embedded in the engine and cannot be removed")
    removed = []
    for path in info.candidates(models_dir):
        for victim in (path, path.with_suffix(".json"), path.with_name(path.name + ".part")):
            if victim.suffix == ".json" and path.suffix != ".safetensors":
                continue
            if victim.is_file():
                victim.unlink()
                removed.append(victim)
    registry.forget_download(info.name, models_dir)
    return removed
