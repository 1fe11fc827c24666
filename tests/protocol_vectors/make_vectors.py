"""Writes the shared protocol test vectors (frames as files) and index.json describing each.

Run from the repository root: `python tests/protocol_vectors/make_vectors.py`. The files are
committed; this script exists so they can be re-made and reviewed. It builds the bytes by hand
(json + struct + zlib), deliberately without either codec, so both codecs are checked against an
independent description of the format. Tests: tests/test_protocol_vectors.py.

index.json: {"vectors": [{"file", "about", "limits" (optional reader limits), "canonical" (re-encoding
the decoded frames gives the file's bytes), "expect": [outcome, ...]}]} where each outcome is
{"frame": {"header": {...}, "parts": [{"name", "kind", "length", "sha256", "dtype"?, "shape"?}]},
 "request": "ok" | "<error code>"}  (the engine's request validation; events say "event")
or {"error": "<code>", "fatal": bool, "id": <request id or null>}.
"""

import hashlib
import json
import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent


def canon(header):
    return (
        json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
        + b"\n"
    )


def png_rgb(width, height, pixel):
    """A minimal 8-bit RGB PNG (filter 0 rows), built with zlib and struct only."""
    rows = []
    for y in range(height):
        row = bytearray([0])
        for x in range(width):
            row += bytes(pixel(x, y))
        rows.append(bytes(row))
    raw = b"".join(rows)

    def chunk(kind, data):
        body = kind + data
        return (
            struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def part(name, kind, data, dtype=None, shape=None):
    desc = {"name": name, "kind": kind, "length": len(data)}
    if kind == "array":
        desc["dtype"] = dtype
        desc["shape"] = list(shape)
    return desc, data


def frame(header, parts=()):
    """(bytes, decoded header, part expectations) for a canonical frame."""
    header = dict(header)
    if parts:
        header["payload"] = [d for d, _ in parts]
        header["payload_length"] = sum(len(b) for _, b in parts)
    data = canon(header) + b"".join(b for _, b in parts)
    expect_parts = []
    for desc, blob in parts:
        e = dict(desc)
        e["sha256"] = hashlib.sha256(blob).hexdigest()
        expect_parts.append(e)
    return data, {"header": header, "parts": expect_parts}


HELLO = {"type": "hello", "id": "h1", "protocol": 1, "client": "vectors"}


def hello_after():
    data, decoded = frame(HELLO)
    return data, {"frame": decoded, "request": "ok"}


def main():
    vectors = []

    def add(name, about, chunks, expect, canonical=False, limits=None):
        blob = b"".join(chunks)
        (HERE / name).write_bytes(blob)
        entry = {"file": name, "about": about, "canonical": canonical, "expect": expect}
        if limits:
            entry["limits"] = limits
        vectors.append(entry)

    # ---- valid frames ---------------------------------------------------------------------
    data, dec = frame(HELLO)
    add("hello.frame", "hello request, no payload", [data], [{"frame": dec, "request": "ok"}], True)

    pixels = bytes(range(12))
    data, dec = frame(
        {"type": "echo", "id": 7}, [part("image", "array", pixels, "uint8", [2, 2, 3])]
    )
    add(
        "echo_array.frame",
        "echo with one uint8 [2,2,3] array part; integer id",
        [data],
        [{"frame": dec, "request": "ok"}],
        True,
    )

    png = png_rgb(4, 4, lambda x, y: (x * 60, y * 60, 128))
    weights = struct.pack("<16f", *[i / 15 for i in range(16)])
    data, dec = frame(
        {"type": "project", "id": "p1", "model": "toy", "output": "array", "preview_every": 0},
        [part("image", "png", png), part("weight_mask", "array", weights, "float32", [4, 4])],
    )
    add(
        "project_png.frame",
        "project: PNG image + float32 weight mask",
        [data],
        [{"frame": dec, "request": "ok"}],
        True,
    )

    mask = bytes(255 if 2 <= x < 6 else 0 for y in range(8) for x in range(8))
    data, dec = frame(
        {
            "type": "drag",
            "id": "d1",
            "seed": 3,
            "psi": 0.7,
            "model": "toy",
            "handles": [[10.5, 20.25], [3, 4]],
            "targets": [[30, 20.25], [5.5, 6]],
            "waypoints": [[[20, 20]], []],
            "max_steps": 50,
            "preview_every": 10,
            "method": "default",
        },
        [part("mask", "array", mask, "uint8", [8, 8])],
    )
    add(
        "drag_seed.frame",
        "drag from a seed with waypoints and a uint8 mask",
        [data],
        [{"frame": dec, "request": "ok"}],
        True,
    )

    # Shorthand payload descriptor: one object = one part named "image" spanning the payload.
    header = {
        "type": "echo",
        "id": "s1",
        "payload_length": 3,
        "payload": {"kind": "array", "dtype": "uint8", "shape": [3]},
    }
    expanded = dict(header)
    expanded_parts = [
        {
            "name": "image",
            "kind": "array",
            "length": 3,
            "dtype": "uint8",
            "shape": [3],
            "sha256": hashlib.sha256(b"xyz").hexdigest(),
        }
    ]
    add(
        "shorthand_payload.frame",
        "single payload descriptor object (shorthand)",
        [json.dumps(header).encode() + b"\nxyz"],
        [{"frame": {"header": expanded, "parts": expanded_parts}, "request": "ok"}],
    )

    # A stream of several frames: blank lines and CRLF line ends between frames are accepted.
    h, hdec = frame(HELLO)
    c, cdec = frame({"type": "cancel", "id": "c1", "target": "d1"})
    s, sdec = frame({"type": "shutdown", "id": "bye"})
    add(
        "stream.frame",
        "hello, blank line, CRLF-terminated cancel, shutdown",
        [h, b"\n", c[:-1] + b"\r\n", s],
        [
            {"frame": hdec, "request": "ok"},
            {"frame": cdec, "request": "ok"},
            {"frame": sdec, "request": "ok"},
        ],
    )

    preview = png_rgb(2, 2, lambda x, y: (255, 0, 0))
    p, pdec = frame(
        {
            "type": "progress",
            "id": "d1",
            "stage": "drag",
            "step": 10,
            "total": 50,
            "points": [[12.5, 20.0]],
            "distances": [17.5],
        },
        [part("preview", "png", preview)],
    )
    r, rdec = frame(
        {
            "type": "result",
            "id": "d1",
            "request": "drag",
            "latent_id": "l2",
            "points": [[29.75, 20.5]],
            "steps": 37,
            "converged": True,
            "size": [2, 2],
            "timings": {"total_seconds": 1.25},
        },
        [part("image", "array", bytes(range(12)), "uint8", [2, 2, 3])],
    )
    e, edec = frame(
        {
            "type": "error",
            "id": "p9",
            "code": "unknown_model",
            "message": "unknown model 'x'",
            "hint": "`dragfu models list` shows every model name",
        }
    )
    add(
        "events.frame",
        "engine events: progress with a PNG preview, a drag result, an error",
        [p, r, e],
        [
            {"frame": pdec, "request": "event"},
            {"frame": rdec, "request": "event"},
            {"frame": edec, "request": "event"},
        ],
        True,
    )

    header_text = '{"type": "hello", "id": "h\u00e9", "client": "caf\u00e9 \u2603"}'
    add(
        "utf8_header.frame",
        "raw UTF-8 (non-ASCII) in the header",
        [header_text.encode("utf-8") + b"\n"],
        [{"frame": {"header": json.loads(header_text), "parts": []}, "request": "ok"}],
    )

    # ---- bad frames: each followed by a good hello, to show the stream stays in sync ---------
    good, good_expect = hello_after()

    def bad(name, about, chunks, code, rid=None, limits=None):
        add(
            name,
            about,
            chunks + [good],
            [{"error": code, "fatal": False, "id": rid}, good_expect],
            limits=limits,
        )

    bad("bad_not_json.frame", "header is not JSON", [b"{bad json\n"], "bad_frame")
    bad("bad_not_object.frame", "header is a JSON array", [b"[1, 2, 3]\n"], "bad_frame")
    bad("bad_no_type.frame", "header without type", [b'{"id": "x"}\n'], "bad_frame", "x")
    bad(
        "bad_type_not_string.frame",
        "type is a number",
        [b'{"id": "x", "type": 5}\n'],
        "bad_frame",
        "x",
    )
    bad(
        "bad_negative_length.frame",
        "payload_length < 0",
        [b'{"type": "echo", "id": "n", "payload_length": -1}\n'],
        "bad_frame",
        "n",
    )
    bad(
        "bad_length_string.frame",
        "payload_length is a string",
        [b'{"type": "echo", "id": "n", "payload_length": "3"}\n'],
        "bad_frame",
        "n",
    )
    bad(
        "bad_nan.frame",
        "NaN is not JSON",
        [b'{"type": "echo", "id": "n", "x": NaN}\n'],
        "bad_frame",
    )
    bad(
        "bad_utf8.frame",
        "header is not UTF-8",
        [b'{"type": "echo", "id": "\xff\xfe"}\n'],
        "bad_frame",
    )
    bad(
        "bad_length_without_payload.frame",
        "payload_length > 0 but no descriptor (payload skipped)",
        [b'{"type": "echo", "id": "q", "payload_length": 4}\nabcd'],
        "bad_frame",
        "q",
    )
    bad(
        "bad_descriptor_without_length.frame",
        "a descriptor but payload_length 0",
        [b'{"type": "echo", "id": "q", "payload": {"kind": "png"}}\n'],
        "bad_frame",
        "q",
    )
    bad(
        "bad_shape_mismatch.frame",
        "array shape [2,2] uint8 = 4 bytes, but length 5 (payload skipped)",
        [
            b'{"type": "echo", "id": "m", "payload_length": 5, "payload": [{"name": "a", "kind": "array", "dtype": "uint8", "shape": [2, 2], "length": 5}]}\n12345'
        ],
        "bad_frame",
        "m",
    )
    bad(
        "bad_dtype.frame",
        "float64 is not a wire dtype (payload skipped)",
        [
            b'{"type": "echo", "id": "m", "payload_length": 8, "payload": [{"name": "a", "kind": "array", "dtype": "float64", "shape": [1], "length": 8}]}\n12345678'
        ],
        "bad_frame",
        "m",
    )
    bad(
        "bad_kind.frame",
        "kind jpeg is not supported (payload skipped)",
        [
            b'{"type": "echo", "id": "m", "payload_length": 2, "payload": [{"name": "a", "kind": "jpeg", "length": 2}]}\nab'
        ],
        "bad_frame",
        "m",
    )
    bad(
        "bad_parts_sum.frame",
        "parts add up to 3 but payload_length is 4 (payload skipped)",
        [
            b'{"type": "echo", "id": "m", "payload_length": 4, "payload": [{"name": "a", "kind": "png", "length": 3}]}\nabcd'
        ],
        "bad_frame",
        "m",
    )
    bad(
        "bad_duplicate_part.frame",
        "two parts named a (payload skipped)",
        [
            b'{"type": "echo", "id": "m", "payload_length": 2, "payload": [{"name": "a", "kind": "png", "length": 1}, {"name": "a", "kind": "png", "length": 1}]}\nab'
        ],
        "bad_frame",
        "m",
    )
    bad(
        "bad_oversized.frame",
        "payload over a 16-byte limit: refused and skipped",
        [
            b'{"type": "echo", "id": "big", "payload_length": 32, "payload": {"kind": "png"}}\n'
            + b"\x00" * 32
        ],
        "payload_too_large",
        "big",
        limits={"max_payload_bytes": 16},
    )
    bad(
        "bad_header_too_long.frame",
        "header line over a 64-byte limit: dropped to its newline",
        [b'{"type": "echo", "id": "long", "padding": "' + b"x" * 200 + b'"}\n'],
        "bad_frame",
        limits={"max_header_bytes": 64},
    )

    add(
        "truncated_header.frame",
        "stream ends inside a header line",
        [b'{"type": "hello", "id": "t"'],
        [{"error": "truncated_frame", "fatal": True, "id": None}],
    )
    add(
        "truncated_payload.frame",
        "stream ends 6 bytes into a 10-byte payload",
        [
            good,
            b'{"type": "echo", "id": "t", "payload_length": 10, "payload": {"kind": "png"}}\nabcdef',
        ],
        [good_expect, {"error": "truncated_frame", "fatal": True, "id": "t"}],
    )
    add("empty.frame", "an empty stream: clean end, nothing decoded", [b""], [], True)

    # ---- well-formed frames that are bad requests (the engine's validation) ----------------
    def bad_request(name, about, header, code, parts=()):
        data, dec = frame(header, parts)
        add(name, about, [data], [{"frame": dec, "request": code}], True)

    bad_request(
        "req_unknown_type.frame",
        "unknown request type",
        {"type": "frobnicate", "id": "u"},
        "unknown_type",
    )
    bad_request(
        "req_bad_version.frame",
        "hello with protocol 99",
        {"type": "hello", "id": "v", "protocol": 99},
        "bad_version",
    )
    bad_request(
        "req_point_not_number.frame",
        "a handle with a string coordinate",
        {"type": "drag", "id": "d", "seed": 1, "handles": [[1, "a"]], "targets": [[2, 2]]},
        "invalid_points",
    )
    bad_request(
        "req_point_infinite.frame",
        "1e999 parses as infinity: not a valid point",
        {"type": "drag", "id": "d", "seed": 1, "handles": [[1, 1]], "targets": [[2, 2]]},
        "invalid_points",
    )
    bad_request(
        "req_points_mismatch.frame",
        "2 handles, 1 target",
        {"type": "drag", "id": "d", "seed": 1, "handles": [[1, 1], [2, 2]], "targets": [[2, 2]]},
        "invalid_points",
    )
    bad_request(
        "req_drag_no_source.frame",
        "drag without seed or projection",
        {"type": "drag", "id": "d", "handles": [[1, 1]], "targets": [[2, 2]]},
        "bad_request",
    )
    bad_request(
        "req_project_no_image.frame",
        "project without an image part",
        {"type": "project", "id": "p"},
        "bad_request",
    )
    bad_request(
        "req_bad_png.frame",
        "project whose image part is not a PNG",
        {"type": "project", "id": "p"},
        "bad_image",
        [part("image", "png", b"this is not a png")],
    )
    bad_request(
        "req_bad_id.frame", "id is an object", {"type": "hello", "id": {"a": 1}}, "bad_request"
    )

    # The infinite point cannot be written by json.dumps; patch the text.
    path = HERE / "req_point_infinite.frame"
    text = path.read_bytes().replace(b'"handles":[[1,1]]', b'"handles":[[1e999,1]]')
    path.write_bytes(text)
    for v in vectors:
        if v["file"] == "req_point_infinite.frame":
            v["canonical"] = False
            v["expect"][0]["frame"]["header"] = (
                None  # decoded header holds inf: not JSON-representable
            )

    (HERE / "index.json").write_text(
        json.dumps({"protocol": 1, "vectors": vectors}, indent=1, sort_keys=True) + "\n"
    )
    print(f"wrote {len(vectors)} vectors to {HERE}")


if __name__ == "__main__":
    main()
