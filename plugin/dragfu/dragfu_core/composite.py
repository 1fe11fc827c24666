"""Put the engine's result (8-bit RGB over a box) back into the source's own pixel layout.

Source pixels come in the drawable's own layout (1 to 4 channels: grey, grey+alpha, RGB, RGBA)
as a bytearray (8-bit) or an array('f') (GIMP 3 high bit depth, read as float 0..1). The engine
sends 8-bit RGB over the box its edit changed, already blended; the source's alpha channel is
always kept, and pixels the engine did not change keep their own values.
"""

import array

# Rec. 709 luma weights for greyscale drawables (GIMP's own desaturate-by-luminance weights).
LUMA = (0.2126, 0.7152, 0.0722)


def color_channels(channels):
    return 1 if channels in (1, 2) else 3


def to_rgb8(source, channels, width, height, max_value=255):
    """8-bit RGB bytes (what the engine takes) from a source buffer in any layout.

    Alpha is dropped (the model sees colour only; transparent pixels keep their colour values).
    """
    n = width * height
    out = bytearray(n * 3)
    integer = isinstance(source, (bytearray, bytes))
    if integer and channels == 3:
        return bytearray(source)
    if integer and channels == 4:
        out[0::3] = source[0::4]
        out[1::3] = source[1::4]
        out[2::3] = source[2::4]
        return out
    if integer and channels in (1, 2):
        grey = source[0::channels]
        out[0::3] = grey
        out[1::3] = grey
        out[2::3] = grey
        return out
    scale = 255.0 / max_value
    n_color = color_channels(channels)
    for k in range(n):
        p = k * channels
        for c in range(3):
            v = source[p + (c if n_color == 3 else 0)] * scale
            v = int(v + 0.5)
            out[k * 3 + c] = 255 if v > 255 else (0 if v < 0 else v)
    return out


def alpha_channel(source, channels, width, height, max_value=255):
    """The layer's alpha as width * height bytes (a projection weight: transparent pixels do not
    matter), or None when the layer has no alpha channel or is fully opaque."""
    if channels not in (2, 4):
        return None
    values = source[channels - 1::channels]
    if isinstance(source, (bytearray, bytes)):
        out = bytearray(values)
    else:
        scale = 255.0 / max_value
        out = bytearray(min(255, max(0, int(v * scale + 0.5))) for v in values)
    if out.count(b"\xff") == len(out) or not any(out):
        return None  # opaque: nothing to weigh; fully transparent: weighing would erase everything
    return out


def sub_rect(source, channels, width, rect):
    """The values of rect (inside a buffer `width` pixels wide) as a buffer of its own type."""
    integer = isinstance(source, (bytearray, bytes))
    out = bytearray() if integer else array.array(source.typecode)
    row = width * channels
    for j in range(rect.y, rect.y2):
        start = j * row + rect.x * channels
        out.extend(source[start:start + rect.width * channels])
    return out


def put_grey(base, channels, base_rect, box, grey):
    """A copy of an 8-bit grey or grey+alpha base (the source over base_rect) whose grey over box
    is the engine's luma (box.width * box.height bytes); alpha is kept. Row slices only."""
    if channels not in (1, 2) or not isinstance(base, (bytearray, bytes)):
        raise ValueError("put_grey takes an 8-bit grey buffer, not %d channels" % channels)
    if len(grey) != box.width * box.height:
        raise ValueError("result has %d bytes, expected %d" % (len(grey), box.width * box.height))
    out = bytearray(base)
    row = base_rect.width * channels
    dx, dy = box.x - base_rect.x, box.y - base_rect.y
    for j in range(box.height):
        start = (dy + j) * row + dx * channels
        line = grey[j * box.width:(j + 1) * box.width]
        out[start:start + box.width * channels:channels] = line
    return out


def put_rgb(base, channels, base_rect, box, rgb, max_value=255):
    """A copy of base (the source over base_rect, its own layout) whose colour channels over box
    (same coordinates as base_rect, inside it) are the engine's 8-bit RGB; alpha is kept.

    8-bit RGB and RGBA buffers are written a row at a time by slicing. Float and grey buffers
    keep their own value wherever the engine sent back the 8-bit value it was given (the edit
    did not touch that pixel), so nothing outside the edit loses precision.
    """
    integer = isinstance(base, (bytearray, bytes))
    out = bytearray(base) if integer else array.array(base.typecode, base)
    if len(rgb) != box.width * box.height * 3:
        raise ValueError("result has %d bytes, expected %d" % (len(rgb), box.width * box.height * 3))
    row = base_rect.width * channels
    dx, dy = box.x - base_rect.x, box.y - base_rect.y
    for j in range(box.height):
        start = (dy + j) * row + dx * channels
        line = rgb[j * box.width * 3:(j + 1) * box.width * 3]
        if integer and channels == 3:
            out[start:start + box.width * 3] = line
            continue
        if integer and channels == 4:
            segment = out[start:start + box.width * 4]
            segment[0::4], segment[1::4], segment[2::4] = line[0::3], line[1::3], line[2::3]
            out[start:start + box.width * 4] = segment
            continue
        segment = base[start:start + box.width * channels]
        given = to_rgb8(segment, channels, box.width, 1, max_value)
        if given == line:
            continue
        for i in range(box.width):
            r = i * 3
            if given[r:r + 3] == line[r:r + 3]:
                continue
            p = start + i * channels
            if color_channels(channels) == 3:
                values = (line[r], line[r + 1], line[r + 2])
            else:
                values = (LUMA[0] * line[r] + LUMA[1] * line[r + 1] + LUMA[2] * line[r + 2],)
            for c, v in enumerate(values):
                out[p + c] = int(v + 0.5) if integer else v * max_value / 255.0
    return out
