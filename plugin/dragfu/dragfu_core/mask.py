"""Masks over the crop: the movable region sent to the engine and the feathered blend mask.

A mask is a bytearray of width * height values 0..255, row-major, one per crop pixel
(GIMP's selection channel read as 8-bit grey over the crop's rectangle).
"""

EDGE_LEFT, EDGE_TOP, EDGE_RIGHT, EDGE_BOTTOM = 0, 1, 2, 3


def full_mask(width, height, value=255):
    return bytearray([value]) * (width * height)


def is_full(mask):
    return mask.count(b"\xff") == len(mask)  # (a bytes argument: Python 2.7 takes no int here)


def movable_mask(mask, threshold=128):
    """The region the engine may move: 255 where the selection is at least half selected, else 0
    (the protocol reads a uint8 mask as value / 255 >= 0.5)."""
    return bytearray(255 if v >= threshold else 0 for v in mask)


def default_feather(width, height):
    """Feather radius for a crop: wide enough to hide the seam, small next to the crop."""
    return max(2, min(width, height) // 16)


def blend_mask(mask, width, height, radius, inner_edges):
    """The alpha used to put the engine's result back: 0..255 per crop pixel.

    mask: the selection over the crop (or a full mask). inner_edges: four booleans (left, top,
    right, bottom): True where that crop edge lies inside the layer, so the result must fade
    out towards it; False where the crop edge is the layer's own edge (nothing to blend with).
    The feather runs inwards: alpha is 0 wherever the mask is 0 (nothing outside the selection
    changes) and reaches the mask's value `radius` pixels inside its edge.
    """
    radius = max(0, int(radius))
    if radius == 0:
        alpha = bytearray(mask)
    elif is_full(mask):
        alpha = bytearray(mask)
    else:
        blurred = _box_blur(_box_blur(mask, width, height, (radius + 1) // 2), width, height, radius // 2 + 1)
        # A blurred hard edge is 128 on the edge and 255 at `radius` inside it; map 128..255
        # to 0..255 so the ramp lies inside the selection, and never exceed the mask itself.
        alpha = bytearray(
            min(m, max(0, 2 * b - 255)) for m, b in zip(mask, blurred)
        )
    if radius and any(inner_edges):
        ramp_x = _edge_ramp(width, radius, inner_edges[EDGE_LEFT], inner_edges[EDGE_RIGHT])
        ramp_y = _edge_ramp(height, radius, inner_edges[EDGE_TOP], inner_edges[EDGE_BOTTOM])
        for j in range(height):
            ry = ramp_y[j]
            row = j * width
            if ry == 255 and ramp_x[0] == 255 and ramp_x[-1] == 255:
                continue
            for i in range(width):
                limit = min(ry, ramp_x[i])
                if alpha[row + i] > limit:
                    alpha[row + i] = limit
    return alpha


def _edge_ramp(length, radius, fade_start, fade_end):
    """Per-position limit 0..255: rises over `radius` pixels from each fading edge."""
    ramp = []
    for i in range(length):
        value = 255
        if fade_start:
            value = min(value, int(255 * (i + 0.5) / (radius + 0.5)))
        if fade_end:
            value = min(value, int(255 * (length - i - 0.5) / (radius + 0.5)))
        ramp.append(max(0, min(255, value)))
    return ramp


def _box_blur(mask, width, height, radius):
    """Separable box blur (window 2 * radius + 1), edges replicated; returns a new bytearray."""
    if radius <= 0:
        return bytearray(mask)
    window = 2 * radius + 1
    rows = bytearray(len(mask))
    for j in range(height):
        line = mask[j * width:(j + 1) * width]
        rows[j * width:(j + 1) * width] = _blur_line(line, radius, window)
    out = bytearray(len(mask))
    for i in range(width):
        column = rows[i::width]
        out[i::width] = _blur_line(column, radius, window)
    return out


def _blur_line(line, radius, window):
    n = len(line)
    first, last = line[0], line[n - 1]
    padded = [first] * radius + list(line) + [last] * radius
    total = sum(padded[:window])
    out = bytearray(n)
    half = window // 2
    for i in range(n):
        out[i] = (total + half) // window
        if i + 1 < n:
            total += padded[i + window] - padded[i]
    return out
