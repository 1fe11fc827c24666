"""Masks over the crop: the movable region sent to the engine (which feathers the edit inside it).

A mask is a bytearray of width * height values 0..255, row-major, one per crop pixel
(GIMP's selection channel read as 8-bit grey over the crop's rectangle).
"""


def movable_mask(mask, threshold=128):
    """The region the engine may move: 255 where the selection is at least half selected, else 0
    (the protocol reads a uint8 mask as value / 255 >= 0.5). A byte table, not a pixel loop."""
    table = bytes(bytearray(255 if v >= threshold else 0 for v in range(256)))
    return bytearray(mask).translate(table)
