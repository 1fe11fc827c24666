"""The one frame codec (dragfu_core.frames, which the engine imports) against tests/protocol_vectors/."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dragfu.protocol import frames as engine_frames
from dragfu.protocol import messages

REPO = Path(__file__).resolve().parents[1]
VECTORS = REPO / "tests" / "protocol_vectors"
sys.path.append(str(REPO / "plugin" / "dragfu"))  # append: the engine package is also named dragfu
from dragfu_core import frames as codec  # noqa: E402

INDEX = json.loads((VECTORS / "index.json").read_text())["vectors"]
PY27 = Path("/root/.pyenv/versions/2.7.18/bin/python")


def vector_ids():
    return [v["file"] for v in INDEX]


def check_outcomes(codec, vector):
    data = (VECTORS / vector["file"]).read_bytes()
    outcomes = codec.read_all(data, **vector.get("limits", {}))
    expect = vector["expect"]
    assert len(outcomes) == len(expect), outcomes
    for got, want in zip(outcomes, expect, strict=True):
        if "error" in want:
            assert isinstance(got, codec.FrameError), got
            assert got.code == want["error"]
            assert got.fatal == want["fatal"]
            assert got.request_id == want["id"]
            continue
        assert isinstance(got, codec.Frame), got
        if want["frame"]["header"] is not None:
            assert got.header == want["frame"]["header"]
        assert len(got.parts) == len(want["frame"]["parts"])
        for part_want in want["frame"]["parts"]:
            part = got.parts[part_want["name"]]
            assert part.kind == part_want["kind"]
            assert len(part.data) == part_want["length"]
            assert hashlib.sha256(part.data).hexdigest() == part_want["sha256"]
            if part.kind == "array":
                assert part.dtype == part_want["dtype"]
                assert list(part.shape) == part_want["shape"]
    return outcomes


def test_the_engine_uses_the_plugin_codec_itself():
    """One implementation: the engine's frames module re-exports the plug-in core's codec."""
    for name in ("Frame", "FrameError", "FrameReader", "Part", "encode_frame", "read_all"):
        assert getattr(engine_frames, name) is getattr(codec, name)


@pytest.mark.parametrize("vector", INDEX, ids=vector_ids())
def test_codec_decodes_vector(vector):
    check_outcomes(codec, vector)


@pytest.mark.parametrize("vector", [v for v in INDEX if v["canonical"]], ids=lambda v: v["file"])
def test_codec_reencodes_canonical_vector_byte_for_byte(vector):
    data = (VECTORS / vector["file"]).read_bytes()
    frames = check_outcomes(codec, vector)
    # Parts go back in the order the header lists them.
    encoded = b""
    for frame in frames:
        order = [d["name"] for d in frame.header.get("payload", [])]
        encoded += codec.encode_frame(frame.header, [frame.parts[name] for name in order])
    assert encoded == data


@pytest.mark.parametrize(
    "vector",
    [v for v in INDEX if any("request" in e for e in v["expect"])],
    ids=lambda v: v["file"],
)
def test_engine_request_validation_matches_vector(vector):
    data = (VECTORS / vector["file"]).read_bytes()
    outcomes = codec.read_all(data, **vector.get("limits", {}))
    for got, want in zip(outcomes, vector["expect"], strict=True):
        if "request" not in want or want["request"] == "event":
            continue
        if want["request"] == "ok":
            request = messages.parse_request(got)
            assert type(request).__name__.lower().replace("loadmodel", "load_model") == got.type
        else:
            with pytest.raises(messages.ProtocolError) as info:
                messages.parse_request(got)
            assert info.value.code == want["request"]


def test_vectors_cover_every_frame_error_code():
    codes = {e["error"] for v in INDEX for e in v["expect"] if "error" in e}
    assert codes == set(codec.FRAME_ERROR_CODES)


def test_vector_files_are_exactly_the_indexed_ones():
    on_disk = {p.name for p in VECTORS.glob("*.frame")}
    assert on_disk == {v["file"] for v in INDEX}


@pytest.mark.skipif(not PY27.exists(), reason="Python 2.7 not installed here")
def test_plugin_codec_decodes_every_vector_under_python27():
    """The plug-in runs in GIMP 2.10's Python 2.7: decode and re-encode every vector there too."""
    script = r"""
import hashlib, json, sys
sys.path.insert(0, sys.argv[1])
from dragfu_core import frames
index = json.load(open(sys.argv[2] + "/index.json"))["vectors"]
checked = 0
for v in index:
    data = open(sys.argv[2] + "/" + v["file"], "rb").read()
    limits = dict((str(k), val) for k, val in v.get("limits", {}).items())
    out = frames.read_all(data, **limits)
    assert len(out) == len(v["expect"]), v["file"]
    encoded = b""
    for got, want in zip(out, v["expect"]):
        if "error" in want:
            assert isinstance(got, frames.FrameError) and got.code == want["error"], (v["file"], got)
            assert got.request_id == want["id"] and got.fatal == want["fatal"], v["file"]
            continue
        assert isinstance(got, frames.Frame), (v["file"], got)
        if want["frame"]["header"] is not None:
            assert got.header == want["frame"]["header"], v["file"]
        for p in want["frame"]["parts"]:
            assert hashlib.sha256(got.parts[p["name"]].data).hexdigest() == p["sha256"], v["file"]
        if v["canonical"]:
            order = [d["name"] for d in got.header.get("payload", [])]
            encoded += frames.encode_frame(got.header, [got.parts[n] for n in order])
    if v["canonical"]:
        assert encoded == data, v["file"]
    checked += 1
print(checked)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run(
        [str(PY27), "-c", script, str(REPO / "plugin" / "dragfu"), str(VECTORS)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) == len(INDEX)
