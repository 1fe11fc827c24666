"""Press a key chord in an X window through the XTEST extension (ctypes; no xdotool needed).

    python3 xkeys.py WINDOW_ID Control_L z

Moves the pointer into the window (near its left edge) (no window manager: focus follows the pointer), then
presses the keys in order and releases them in reverse. Runs inside the GIMP 3 chroot.
"""

import ctypes
import sys
import time

x11 = ctypes.cdll.LoadLibrary("libX11.so.6")
xtst = ctypes.cdll.LoadLibrary("libXtst.so.6")
x11.XOpenDisplay.restype = ctypes.c_void_p
x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
x11.XStringToKeysym.restype = ctypes.c_ulong
x11.XStringToKeysym.argtypes = [ctypes.c_char_p]
x11.XKeysymToKeycode.restype = ctypes.c_ubyte
x11.XKeysymToKeycode.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
x11.XFlush.argtypes = [ctypes.c_void_p]
x11.XSetInputFocus.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_ulong]
x11.XRaiseWindow.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
x11.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
xtst.XTestFakeKeyEvent.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_ulong]
xtst.XTestFakeMotionEvent.argtypes = [
    ctypes.c_void_p,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_ulong,
]


ERROR_HANDLER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
IGNORE_ERRORS = ERROR_HANDLER(lambda display, event: 0)


class Attributes(ctypes.Structure):
    _fields_ = [
        ("x", ctypes.c_int),
        ("y", ctypes.c_int),
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
    ] + [("rest", ctypes.c_byte * 256)]


def main():
    window = int(sys.argv[1], 0)
    x11.XSetErrorHandler(
        IGNORE_ERRORS
    )  # a refused focus change is not fatal: the pointer gives focus
    display = x11.XOpenDisplay(None)
    if not display:
        sys.exit("cannot open the display")
    attributes = Attributes()
    x11.XGetWindowAttributes.argtypes = [
        ctypes.c_void_p,
        ctypes.c_ulong,
        ctypes.POINTER(Attributes),
    ]
    x11.XGetWindowAttributes(display, window, ctypes.byref(attributes))
    x11.XRaiseWindow(display, window)
    # Near the left edge: GIMP's welcome dialog may cover the middle of the window.
    xtst.XTestFakeMotionEvent(
        display, -1, attributes.x + 20, attributes.y + attributes.height // 2, 0
    )
    x11.XSetInputFocus(display, window, 1, 0)  # RevertToPointerRoot, CurrentTime
    x11.XSync(display, 0)
    time.sleep(0.5)
    codes = [
        x11.XKeysymToKeycode(display, x11.XStringToKeysym(name.encode())) for name in sys.argv[2:]
    ]
    for code in codes:
        xtst.XTestFakeKeyEvent(display, code, 1, 0)
        x11.XFlush(display)
        time.sleep(0.05)
    for code in reversed(codes):
        xtst.XTestFakeKeyEvent(display, code, 0, 0)
        x11.XFlush(display)
        time.sleep(0.05)
    x11.XSync(display, 0)


if __name__ == "__main__":
    main()
