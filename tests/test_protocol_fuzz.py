"""Hypothesis fuzzing of the frame parsers and request validation (>= 10,000 cases per run).

Everything runs in-process on bytes, so thousands of cases take seconds. Invariants:
- the parser (the one codec, dragfu_core.frames) never raises anything but FrameError, always
  terminates, reports at most one fatal error (last), and decodes the same however the input is
  chunked by the pipe;
- request validation returns a request or a ProtocolError with a documented code;
- the server, given any frame, answers every request with exactly one result or error whose
  code is documented, and never with `internal` (which would mean a bug, i.e. a traceback).
"""

from __future__ import annotations

import io
import json
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dragfu.protocol import frames as engine_frames
from dragfu.protocol import messages
from dragfu.protocol.frames import Frame, FrameError, Part, encode_frame, read_all
from dragfu.protocol.server import Server

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.append(str(REPO / "plugin" / "dragfu"))  # append: the engine package is also named dragfu
sys.path.append(str(HERE / "protocol_vectors"))
from serve_fake_engine import FakeBackend  # noqa: E402

from dragfu_core import frames as codec  # noqa: E402

VECTORS = [
    (HERE / "protocol_vectors" / v["file"]).read_bytes()
    for v in json.loads((HERE / "protocol_vectors" / "index.json").read_text())["vectors"]
]
LIMITS = {"max_header_bytes": 256, "max_payload_bytes": 256}
FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=False,
)

# Case counts: 4000 + 3500 + 1600 + 900 = 10,000 generated cases.
N_RANDOM_BYTES = 4000
N_MUTATED = 3500
N_REQUESTS = 1600
N_SERVER = 900


@pytest.fixture(autouse=True)
def no_hang():
    """Turn a hang into a failure: no fuzz test may run for more than two minutes."""

    def expired(*_):
        raise TimeoutError("fuzz test ran over 120 s: a parser or the server hangs")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def chunked_reader(data: bytes, sizes: list[int]):
    """A read(n) that returns the data in awkward chunk sizes, like a pipe does."""
    state = {"pos": 0, "i": 0}

    def read(n: int) -> bytes:
        size = min(n, sizes[state["i"] % len(sizes)]) if sizes else n
        state["i"] += 1
        chunk = data[state["pos"] : state["pos"] + max(size, 1)]
        state["pos"] += len(chunk)
        return chunk

    return read


def decode_all(codec, data: bytes, sizes: list[int]) -> list:
    reader = codec.FrameReader(chunked_reader(data, sizes), **LIMITS)
    out = []
    for _ in range(
        len(data) + 2
    ):  # every frame consumes at least one byte: this bound cannot be hit
        try:
            frame = reader.read_frame()
        except codec.FrameError as error:
            out.append(("error", error.code, error.fatal, error.request_id))
            if error.fatal:
                return out
            continue
        if frame is None:
            return out
        parts = sorted(
            (p.name, p.kind, p.dtype, tuple(p.shape or ()), bytes(p.data))
            for p in frame.parts.values()
        )
        out.append(("frame", frame.header, parts))
    raise AssertionError("reader did not reach the end of a finite input")


def check_outcomes(outcomes: list) -> None:
    for i, outcome in enumerate(outcomes):
        if outcome[0] == "error":
            assert outcome[1] in codec.FRAME_ERROR_CODES
            assert not outcome[2] or i == len(outcomes) - 1  # only the last can be fatal
        else:
            header, parts = outcome[1], outcome[2]
            assert isinstance(header, dict) and isinstance(header["type"], str)
            assert sum(len(p[4]) for p in parts) == (header.get("payload_length") or 0)


@settings(FUZZ, max_examples=N_RANDOM_BYTES)
@given(data=st.binary(max_size=600), sizes=st.lists(st.integers(1, 64), max_size=4))
def test_random_bytes_never_crash_the_codec_whatever_the_chunks(data, sizes):
    outcomes = decode_all(codec, data, sizes)
    check_outcomes(outcomes)
    assert decode_all(codec, data, []) == outcomes  # the pipe's chunking changes nothing


@st.composite
def mutated_vector(draw):
    data = bytearray(draw(st.sampled_from(VECTORS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "newline", "digit"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "truncate":
            del data[pos:]
        elif op == "newline":
            data[pos:pos] = b"\n"
        elif op == "digit" and data:
            data[pos] = ord(str(draw(st.integers(0, 9))))
    return bytes(data)


@settings(FUZZ, max_examples=N_MUTATED)
@given(data=mutated_vector(), sizes=st.lists(st.integers(1, 4096), max_size=3))
def test_mutated_vectors_never_crash_the_codec_whatever_the_chunks(data, sizes):
    outcomes = decode_all(codec, data, sizes)
    check_outcomes(outcomes)
    assert decode_all(codec, data, []) == outcomes  # the pipe's chunking changes nothing


# ---------------------------------------------------------------------------------------------
# Requests

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=6,
)
coordinate = st.one_of(
    st.floats(-4, 40), st.integers(-2, 40), st.floats(allow_nan=False), st.text(max_size=3)
)
point = st.one_of(
    st.lists(coordinate, min_size=2, max_size=2), st.lists(coordinate, max_size=3), json_values
)
points = st.one_of(st.lists(point, min_size=1, max_size=4), json_values)


def maybe(strategy):
    return st.one_of(strategy, json_values)


def tiny_png(width: int, height: int, mode: str) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def part_pool() -> list[tuple[str, str, bytes, str | None, tuple | None]]:
    """Payload parts to draw from, made once (making PNGs per example would dominate the run)."""
    rng = np.random.default_rng(0)
    pool: list = []
    for width, height in [(1, 1), (16, 16), (24, 16), (8, 30)]:
        for mode in ("RGB", "L", "RGBA", "I;16", "1", "P"):
            pool.append(("png", tiny_png(width, height, mode), None, None))
    pool += [
        ("png", b"", None, None),
        ("png", b"\x89PNG\r\n\x1a\n garbage", None, None),
        ("png", rng.bytes(40), None, None),
    ]
    shapes = [
        (16, 16),
        (16, 16, 3),
        (16, 16, 4),
        (16, 16, 1),
        (24, 16),
        (16, 24, 3),
        (3,),
        (2, 2, 2, 2),
        (1, 1),
        (5, 7, 2),
    ]
    for dtype, np_dtype in engine_frames.DTYPES.items():
        for shape in shapes:
            if dtype == "float32":
                values = rng.normal(0.5, 2.0, shape).astype(np_dtype)
                values.flat[0] = rng.choice([np.nan, np.inf, 0.5])
            else:
                values = rng.integers(0, 256, shape).astype(np_dtype)
            pool.append(("array", values.tobytes(), dtype, shape))
    pool.append(
        ("array", np.zeros((16, 16), np.uint8).tobytes(), "uint8", (16, 16))
    )  # an empty mask
    return pool


PARTS = part_pool()


@st.composite
def payload_part(draw, name):
    kind, data, dtype, shape = draw(st.sampled_from(PARTS))
    return Part(name, kind, data, dtype, shape)


OPTIONAL_FIELDS = {
    "id": st.one_of(st.text(max_size=8), st.integers(-5, 5), json_values),
    "protocol": st.one_of(st.just(1), json_values),
    "model": st.one_of(st.sampled_from(["fake", "missing", "corrupt"]), json_values),
    "seed": st.one_of(st.integers(-2, 2**33), json_values),
    "psi": st.one_of(st.floats(-12, 12), json_values),
    "handles": points,
    "targets": points,
    "waypoints": st.one_of(st.lists(st.lists(point, max_size=3), max_size=3), json_values),
    "latent_id": json_values,
    "projection_id": json_values,
    "max_steps": st.one_of(st.integers(-1, 40), json_values),
    "preview_every": st.one_of(st.integers(-1, 5), json_values),
    "output": st.one_of(st.sampled_from(["png", "array", "jpeg"]), json_values),
    "method": st.one_of(st.sampled_from(["default", "draggan"]), st.integers()),
    "settings": st.one_of(st.fixed_dictionaries({"steps": st.integers(0, 3)}), json_values),
    "options": st.one_of(st.just({}), json_values),
    "cache": json_values,
    "target": json_values,
    "client": json_values,
}
OPTIONAL_KEYS = sorted(OPTIONAL_FIELDS)


@st.composite
def request_frame(draw) -> Frame:
    """Mostly well-formed requests (so the deep checks run), then perturbed at random."""
    kind = draw(st.sampled_from([*messages.REQUEST_TYPES, "drag", "drag", "project", "junk"]))
    header = {
        "type": draw(json_values) if kind == "junk" else kind,
        "id": draw(st.sampled_from(["a", "b", 1])),
    }
    names: list[str] = []
    if kind == "drag":
        n = draw(st.integers(1, 3))
        valid_point = st.lists(st.floats(0, 16), min_size=2, max_size=2)
        header["handles"] = draw(st.lists(valid_point, min_size=n, max_size=n))
        header["targets"] = draw(st.lists(valid_point, min_size=n, max_size=n))
        header["max_steps"] = draw(st.integers(1, 30))
        if draw(st.booleans()):
            header["seed"] = draw(st.integers(0, 5))
        else:
            header["latent_id"] = draw(st.sampled_from(["p1", "l2", "l3", "nope"]))
        if draw(st.booleans()):
            names.append("mask")
    elif kind == "project":
        names.append("image")
        header["settings"] = {"steps": draw(st.integers(0, 3))}
        if draw(st.booleans()):
            names.append("weight_mask")
    elif kind == "load_model":
        header["model"] = draw(st.sampled_from(["fake", "missing", "corrupt"]))
    for key in draw(st.lists(st.sampled_from(OPTIONAL_KEYS), unique=True, max_size=4)):
        header[key] = draw(OPTIONAL_FIELDS[key])
    names += draw(st.lists(st.sampled_from(["image", "mask", "weight_mask", "other"]), max_size=1))
    parts = {name: draw(payload_part(name)) for name in dict.fromkeys(names)}
    return Frame(header, parts)


@settings(FUZZ, max_examples=N_REQUESTS)
@given(frame=request_frame())
def test_request_validation_accepts_or_refuses_with_a_documented_code(frame):
    try:
        request = messages.parse_request(frame)
    except messages.ProtocolError as error:
        assert error.code in messages.ERROR_CODES
        assert str(error) and "\n" not in str(error)
        return
    assert type(request).__name__ in (
        "Hello",
        "LoadModel",
        "Project",
        "Drag",
        "Cancel",
        "Shutdown",
        "Echo",
    )


class FuzzBackend(FakeBackend):
    def drag(self, G, ws, handles, targets, **kwargs):
        kwargs["max_steps"] = min(kwargs["max_steps"], 40)  # keep each case fast
        return super().drag(G, ws, handles, targets, **kwargs)


@settings(FUZZ, max_examples=N_SERVER)
@given(frames=st.lists(request_frame(), min_size=1, max_size=3))
def test_server_answers_any_request_with_one_result_or_error(frames):
    written: list[bytes] = []
    server = Server(FuzzBackend(), written.append, idle_timeout=0)
    for frame in frames:
        # Through the wire format first: what the codec refuses never reaches the server.
        try:
            data = encode_frame(frame.header, list(frame.parts.values()))
        except (ValueError, TypeError):
            continue  # not JSON-encodable (e.g. a huge float): a client could not send it either
        decoded = read_all(data)
        assert len(decoded) == 1
        if isinstance(decoded[0], FrameError):
            continue
        before = len(written)
        server.dispatch(decoded[0])
        while server._queued:  # run queued work synchronously (the worker thread's job)
            job = server._queued.popleft()
            server._running = job
            server._run_job(job)
            server._running = None
        answers = [f for f in read_all(b"".join(written[before:])) if isinstance(f, Frame)]
        assert len(answers) == len(written) - before  # every frame the server wrote decodes
        final = [f for f in answers if f.type in ("result", "error")]
        assert len(final) == 1, [f.header for f in answers]
        if final[0].type == "error":
            assert final[0].header["code"] in messages.ERROR_CODES
            assert final[0].header["code"] != "internal", final[0].header
