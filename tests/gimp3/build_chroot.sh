#!/bin/sh
# Build (once) a Debian 13 "trixie" chroot with GIMP 3 + Python plug-in support + Debian's
# CPU torch, for the real-GIMP-3 end-to-end test. Run as root. Idempotent: exits at once
# when the finished chroot exists. Usage: build_chroot.sh [ROOT]
#   ROOT defaults to /var/cache/dragfu-gimp3-chroot (outside the repo, so it survives runs).
set -eu
ROOT="${1:-/var/cache/dragfu-gimp3-chroot}"
STAMP="$ROOT/.dragfu-ready"
# The engine's packages; a chroot built before one was added gets it installed in place.
ENGINE_PACKAGES="python3-torch python3-numpy python3-pil python3-platformdirs python3-tqdm python3-safetensors python3-opencv"
if [ -f "$STAMP" ]; then
  if ! chroot "$ROOT" python3 -c "import cv2" >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || { echo "build_chroot.sh: needs root" >&2; exit 3; }
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
    DEBIAN_FRONTEND=noninteractive chroot "$ROOT" apt-get install -y --no-install-recommends $ENGINE_PACKAGES
    chroot "$ROOT" apt-get clean
  fi
  echo "chroot ready: $ROOT"; exit 0
fi
[ "$(id -u)" = 0 ] || { echo "build_chroot.sh: needs root" >&2; exit 3; }

# The mirror the machine's own apt sources name (deb822 "URIs:" or one-line "deb URL").
MIRROR="$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)"
if [ -z "$MIRROR" ]; then
  MIRROR="$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)"
fi
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

if ! command -v debootstrap >/dev/null 2>&1; then
  apt-get update
  apt-get install -y debootstrap
fi

WORK="$ROOT.partial"
cleanup() { umount "$WORK/proc" 2>/dev/null || true; }
trap cleanup EXIT
if [ ! -f "$WORK/.debootstrap-done" ]; then
  rm -rf "$WORK"
  mkdir -p "$WORK"
  # debootstrap reports configure failures at the end (known); --fix-broken completes it.
  debootstrap --variant=minbase --include=gimp,python3-gi,gir1.2-gimp-3.0 trixie "$WORK" "$MIRROR" || true
  [ -x "$WORK/usr/bin/apt-get" ] || { echo "build_chroot.sh: debootstrap failed" >&2; exit 4; }
  touch "$WORK/.debootstrap-done"
fi
mountpoint -q "$WORK/proc" || mount -t proc proc "$WORK/proc"
cp /etc/resolv.conf "$WORK/etc/resolv.conf" 2>/dev/null || true
export DEBIAN_FRONTEND=noninteractive
chroot "$WORK" apt-get -y --fix-broken install
# The engine inside the chroot: Debian's CPU torch and friends; Xvfb + ImageMagick for the
# dialog screenshot.
chroot "$WORK" apt-get install -y --no-install-recommends \
  $ENGINE_PACKAGES xvfb xauth imagemagick x11-utils
chroot "$WORK" python3 -c "import gi; gi.require_version('Gimp', '3.0'); import torch, numpy, PIL, safetensors, cv2"
umount "$WORK/proc"
chroot "$WORK" apt-get clean
rm -rf "$ROOT"
mv "$WORK" "$ROOT"
touch "$STAMP"
echo "chroot ready: $ROOT"
