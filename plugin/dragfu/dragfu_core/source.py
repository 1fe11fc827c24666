"""Where a result layer came from: the layer parasite that lets a later drag skip the projection.

A Drag-Fu result layer carries a persistent parasite ``dragfu-source`` (it is saved in the XCF):
JSON naming the model, the engine's key of the drag's final latent (``latent_key``: the latent,
the tuned generator, the photo frame and its alignment, kept in the engine's cache), the crop
(layer coordinates) the latent's image is, and the alignment. A run on such a layer sends the
same crop with ``from_key``: the engine continues from that latent when it still has it and the
pixels are still the ones that drag produced, and projects again (with a note) otherwise.
"""

import json

from . import geometry

PARASITE_NAME = "dragfu-source"
VERSION = 1
try:
    STRING_TYPES = (str, unicode)  # noqa: F821  # Python 2.7: json gives unicode
except NameError:
    STRING_TYPES = (str,)


def encode(model, latent_key, crop, alignment=None):
    """The parasite's bytes (compact JSON, ASCII)."""
    data = {
        "v": VERSION,
        "engine": "dragfu",
        "model": model,
        "latent_key": latent_key,
        "crop": [crop.x, crop.y, crop.width, crop.height],
    }
    if alignment:
        data["alignment"] = alignment
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("ascii")


def decode(data):
    """The parasite's fields as a dict, or None for anything that is not ours or is damaged."""
    if data is None:
        return None
    try:
        if not isinstance(data, (bytes, bytearray)):
            data = bytes(bytearray(data))  # GIMP 3 may hand back a list of ints
        fields = json.loads(bytes(data).decode("utf-8"))
    except (TypeError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(fields, dict) or fields.get("v") != VERSION:
        return None
    key, crop = fields.get("latent_key"), fields.get("crop")
    if not isinstance(key, STRING_TYPES) or not key:
        return None
    if not (isinstance(crop, list) and len(crop) == 4 and all(isinstance(v, int) for v in crop)):
        return None
    return fields


def resume(source, model, layer_drags, info):
    """(crop Rect, latent key, note) for a run on a result layer: the crop of the earlier drag
    when this run's model is that drag's and every point lies inside it; (None, None, note)
    otherwise (note None when there is nothing to say)."""
    if source is None:
        return None, None, None
    if source.get("model") != model:
        return None, None, "the layer came from model %s: projected again" % source.get("model")
    crop = geometry.Rect(*source["crop"])
    if crop.is_empty() or crop.x < 0 or crop.y < 0 or crop.x2 > info.width or crop.y2 > info.height:
        return None, None, "the layer's earlier crop no longer fits it: projected again"
    for d in layer_drags:
        for x, y in d.points():
            if not crop.contains_point(x, y):
                return None, None, "a point lies outside the earlier drag's region: projected again"
    return crop, source["latent_key"], None


def read(host):
    """The host's source parasite as fields (None: not a Drag-Fu layer, or a host without them)."""
    reader = getattr(host, "layer_source", None)
    if reader is None:
        return None
    try:
        return decode(reader(PARASITE_NAME))
    except Exception:  # a parasite we cannot read is the same as none
        return None
