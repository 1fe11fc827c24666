"""Model downloads against a loopback HTTP server (127.0.0.1 only): every case of the install issue.

success, resume after a dropped connection, wrong hash (rejected, partial file deleted), 404, a
stalled server (times out), a redirect, a proxy from the environment, no disk space; then the
model-level flow: licence acceptance, conversion to safetensors, recorded hash, verify, remove.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dragfu.cli.main import main
from dragfu.errors import ChecksumError, DownloadError, LicenseNotAcceptedError
from dragfu.models import download, registry
from dragfu.models.registry import ModelInfo

PAYLOAD = bytes(range(256)) * 1200  # 300 KiB, several read chunks
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Server:
    """Routes: path -> bytes. Behaviour switches per path; `requests` logs (path, Range header)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.drop_first: set[str] = set()  # first GET sends half the body, then closes
        self.ignore_range: set[str] = set()
        self.stall: set[str] = set()
        self.redirects: dict[str, str] = {}
        self.release = threading.Event()
        self.proxied: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep the test output clean
                pass

            def do_GET(self):
                path = self.path
                if path.startswith("http://"):  # asked as a proxy: absolute URI
                    server.proxied.append(path)
                    path = "/" + path.split("/", 3)[3]
                server.requests.append((path, self.headers.get("Range")))
                if path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path not in server.files:
                    self.send_error(404, "Not Found")
                    return
                body = server.files[path]
                start = 0
                header = self.headers.get("Range")
                if header and path not in server.ignore_range:
                    start = int(header.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.send_header("Connection", "close")
                self.end_headers()
                if path in server.stall:
                    self.wfile.write(body[start : start + 1000])
                    self.wfile.flush()
                    server.release.wait(10)
                    return
                if path in server.drop_first:
                    server.drop_first.discard(path)
                    self.wfile.write(body[start : start + len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real proxy settings, no real user folders."""
    for name in (
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "")
    monkeypatch.setenv("DRAGFU_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DRAGFU_MODELS_DIR", raising=False)


@pytest.fixture
def server():
    srv = Server()
    srv.thread.start()
    yield srv
    srv.release.set()
    srv.httpd.shutdown()
    srv.httpd.server_close()


def fetch(url, dest, **kwargs):
    kwargs.setdefault("retry_wait", 0.01)
    kwargs.setdefault("timeout", 5.0)
    kwargs.setdefault("progress", None)
    return download.fetch(url, dest, **kwargs)


def test_success_writes_file_atomically_with_hash(server, tmp_path):
    server.files["/ok.bin"] = PAYLOAD
    seen = []
    result = fetch(server.url("/ok.bin"), tmp_path / "ok.bin", sha256=PAYLOAD_SHA,
                   progress=lambda done, total: seen.append((done, total)))  # fmt: skip
    assert (tmp_path / "ok.bin").read_bytes() == PAYLOAD
    assert result.sha256 == PAYLOAD_SHA and result.size == len(PAYLOAD) and result.attempts == 1
    assert not (tmp_path / "ok.bin.part").exists()
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))


def test_resume_after_dropped_connection_uses_range(server, tmp_path):
    server.files["/drop.bin"] = PAYLOAD
    server.drop_first.add("/drop.bin")
    result = fetch(server.url("/drop.bin"), tmp_path / "drop.bin", sha256=PAYLOAD_SHA)
    assert (tmp_path / "drop.bin").read_bytes() == PAYLOAD
    assert result.attempts == 2 and result.resumed
    ranges = [r for p, r in server.requests if p == "/drop.bin"]
    assert ranges == [None, f"bytes={len(PAYLOAD) // 2}-"]


def test_resume_from_partial_file_left_by_earlier_run(server, tmp_path):
    server.files["/ok.bin"] = PAYLOAD
    (tmp_path / "ok.bin.part").write_bytes(PAYLOAD[:1000])
    result = fetch(server.url("/ok.bin"), tmp_path / "ok.bin", sha256=PAYLOAD_SHA)
    assert result.resumed and server.requests == [("/ok.bin", "bytes=1000-")]
    assert (tmp_path / "ok.bin").read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.files["/ok.bin"] = PAYLOAD
    server.ignore_range.add("/ok.bin")
    (tmp_path / "ok.bin.part").write_bytes(b"garbage" * 100)
    fetch(server.url("/ok.bin"), tmp_path / "ok.bin", sha256=PAYLOAD_SHA)
    assert (tmp_path / "ok.bin").read_bytes() == PAYLOAD


def test_wrong_hash_is_rejected_and_partial_deleted(server, tmp_path):
    server.files["/ok.bin"] = PAYLOAD
    with pytest.raises(ChecksumError) as caught:
        fetch(server.url("/ok.bin"), tmp_path / "ok.bin", sha256="0" * 64)
    assert caught.value.code == "bad_checksum"
    assert not (tmp_path / "ok.bin").exists() and not (tmp_path / "ok.bin.part").exists()


def test_404_fails_at_once_without_retries(server, tmp_path):
    with pytest.raises(DownloadError) as caught:
        fetch(server.url("/missing.pkl"), tmp_path / "m.pkl", retries=3)
    assert "404" in str(caught.value) and caught.value.code == "http_error"
    assert len(server.requests) == 1
    assert not list(tmp_path.iterdir())


def test_stalled_server_times_out_after_retries(server, tmp_path):
    server.files["/stall.bin"] = PAYLOAD
    server.stall.add("/stall.bin")
    with pytest.raises(DownloadError) as caught:
        fetch(server.url("/stall.bin"), tmp_path / "s.bin", timeout=0.3, retries=1)
    assert "2 tries" in str(caught.value) and caught.value.code == "download_failed"
    assert len(server.requests) == 2
    assert server.requests[1][1] == "bytes=1000-"  # the second try resumed the first one's bytes
    assert not (tmp_path / "s.bin").exists()


def test_redirect_is_followed(server, tmp_path):
    server.files["/real/ok.bin"] = PAYLOAD
    server.redirects["/moved.bin"] = server.url("/real/ok.bin")
    fetch(server.url("/moved.bin"), tmp_path / "ok.bin", sha256=PAYLOAD_SHA)
    assert (tmp_path / "ok.bin").read_bytes() == PAYLOAD
    assert [p for p, _ in server.requests] == ["/moved.bin", "/real/ok.bin"]


def test_proxy_from_environment(server, tmp_path, monkeypatch):
    server.files["/weights.bin"] = PAYLOAD
    monkeypatch.setenv("http_proxy", server.url(""))
    # A host that cannot resolve: only the proxy can answer for it.
    fetch("http://models.invalid/weights.bin", tmp_path / "w.bin", sha256=PAYLOAD_SHA)
    assert server.proxied == ["http://models.invalid/weights.bin"]
    assert (tmp_path / "w.bin").read_bytes() == PAYLOAD


def test_no_disk_space_is_refused_before_writing(server, tmp_path, monkeypatch):
    server.files["/ok.bin"] = PAYLOAD
    monkeypatch.setattr(download, "_free_bytes", lambda folder: 1000)
    with pytest.raises(DownloadError) as caught:
        fetch(server.url("/ok.bin"), tmp_path / "ok.bin")
    assert caught.value.code == "no_space" and "DRAGFU_MODELS_DIR" in caught.value.hint
    assert not (tmp_path / "ok.bin").exists()


# --- model level: registry entry, licence, conversion, record, verify, remove ---------------


def _entry(url: str, sha256: str | None, noncommercial: bool = True) -> ModelInfo:
    return ModelInfo(
        name="tiny-test", title="tiny test generator", resolution=(32, 32), url=url,
        sha256=sha256, license="Test Licence-NC", filename="tiny-test.safetensors",
        noncommercial=noncommercial,
    )  # fmt: skip


@pytest.fixture
def tiny_pickle_served(server, monkeypatch, reference_dir):
    data = (reference_dir / "tiny_network_protocol4.pkl").read_bytes()
    server.files["/tiny_network.pkl"] = data
    return server, hashlib.sha256(data).hexdigest()


def test_model_download_needs_licence_then_converts_and_records(
    tiny_pickle_served, tmp_path, monkeypatch
):
    server, digest = tiny_pickle_served
    info = _entry(server.url("/tiny_network.pkl"), sha256=None)
    monkeypatch.setitem(registry.MODELS, info.name, info)
    models = tmp_path / "models"
    with pytest.raises(LicenseNotAcceptedError):
        download.download_model("tiny-test", models_dir=models, progress=None)
    assert server.requests == []  # nothing fetched before acceptance

    report = download.download_model(
        "tiny-test", models_dir=models, accept=True, progress=None, retry_wait=0.01
    )
    assert report.status == "downloaded" and report.converted and report.hash_source == "none"
    assert any("no published sha256" in w for w in report.warnings)
    assert report.path == models / "tiny-test.safetensors"
    assert (models / "tiny-test.json").exists() and not (models / "tiny_network.pkl").exists()
    assert not [p for p in models.iterdir() if p.name.startswith(".")]  # no temp leftovers
    record = registry.load_user_registry(models)
    assert record["models"]["tiny-test"]["source_sha256"] == digest
    assert "Test Licence-NC" in record["accepted_licenses"]
    assert registry.resolve("tiny-test", models) == models / "tiny-test.safetensors"

    from dragfu.models import load_generator

    generator = load_generator(report.path)
    assert generator.img_resolution == 32

    checks = download.verify_model(info, models)
    assert {c.status for c in checks} == {"ok"} and {c.source for c in checks} == {"recorded"}
    # a changed file is caught by verify
    with open(models / "tiny-test.safetensors", "r+b") as handle:
        handle.seek(-1, os.SEEK_END)
        last = handle.read(1)
        handle.seek(-1, os.SEEK_END)
        handle.write(bytes([last[0] ^ 0xFF]))
    assert "mismatch" in {c.status for c in download.verify_model(info, models)}

    removed = download.remove_model(info, models)
    assert {p.name for p in removed} == {"tiny-test.safetensors", "tiny-test.json"}
    assert "tiny-test" not in registry.load_user_registry(models)["models"]
    assert not info.present(models)


def test_model_download_wrong_published_hash_keeps_nothing(
    tiny_pickle_served, tmp_path, monkeypatch
):
    server, _ = tiny_pickle_served
    info = _entry(server.url("/tiny_network.pkl"), sha256="ab" * 32, noncommercial=False)
    monkeypatch.setitem(registry.MODELS, info.name, info)
    models = tmp_path / "models"
    with pytest.raises(ChecksumError):
        download.download_model("tiny-test", models_dir=models, progress=None)
    assert sorted(p.name for p in models.iterdir()) == []
    assert registry.load_user_registry(models)["models"] == {}


def test_model_download_by_url_cli_then_list_verify_remove(tiny_pickle_served, tmp_path, capsys):
    server, digest = tiny_pickle_served
    models = str(tmp_path / "models")
    url = server.url("/tiny_network.pkl")
    assert main(["models", "--models-dir", models, "download", url, "--sha256", digest,
                 "--name", "mine", "--keep-source", "--json"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "downloaded" and out["hash_source"] == "published"
    assert out["sha256"] == digest and out["converted"]

    assert main(["models", "--models-dir", models, "list", "--json", "--present"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert listed["mine"]["present"] and listed["mine"]["url"] == url

    assert main(["models", "--models-dir", models, "verify", "mine", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["results"][0]
    assert result["status"] == "ok" and len(result["files"]) == 3  # pkl, safetensors, json

    # a second download is a no-op
    assert main(["models", "--models-dir", models, "download", url, "--name", "mine"]) == 0
    assert "already present" in capsys.readouterr().out

    Path(models, "mine.json").write_text("{}")  # a changed sidecar config is caught
    assert main(["models", "--models-dir", models, "verify", "mine"]) == 1
    assert "mine: mismatch" in capsys.readouterr().out

    assert main(["models", "--models-dir", models, "remove", "mine"]) == 0
    # Only the user's database (and the lock file its writers take) is left.
    assert sorted(os.listdir(models)) == ["dragfu-models.json", "dragfu-models.json.lock"]


def test_cli_download_unknown_name_is_one_line_error(tmp_path, capsys):
    assert main(["models", "--models-dir", str(tmp_path), "download", "ffhq512"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ffhq-512" in err[0]


def test_cli_download_without_licence_acceptance_fails_cleanly(tmp_path, capsys):
    # ffhq-512 is NVIDIA's non-commercial release: refused before any network access.
    assert main(["models", "--models-dir", str(tmp_path), "download", "ffhq-512"]) == 2
    err = capsys.readouterr().err
    assert "--accept-license" in err and "NVIDIA Source Code License-NC" in err
    assert not (tmp_path / "stylegan2-ffhq-512x512.pkl.part").exists()


def test_lpips_weights_download_without_conversion(server, tmp_path, monkeypatch):
    server.files["/metrics/vgg16.pt"] = PAYLOAD
    info = ModelInfo(
        name="lpips-test", title="LPIPS", resolution=(0, 0), url=server.url("/metrics/vgg16.pt"),
        sha256=PAYLOAD_SHA, license="BSD", filename="vgg16.pt", kind="lpips", noncommercial=False,
    )  # fmt: skip
    monkeypatch.setitem(registry.MODELS, info.name, info)
    models = tmp_path / "models"
    report = download.download_model("lpips-test", models_dir=models, progress=None)
    assert report.path == models / "vgg16.pt" and not report.converted
    assert report.hash_source == "published" and not report.warnings
    assert (models / "vgg16.pt").read_bytes() == PAYLOAD
    assert [c.status for c in download.verify_model(info, models)] == ["ok"]
