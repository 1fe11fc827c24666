#!/usr/bin/env bash
# The tests carry their own data: clone this checkout into an empty folder (nothing beside it,
# no ../shared) and run the tests that read the NVIDIA reference data there.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
alone="$(mktemp -d /tmp/dragfu-alone.XXXXXX)"
trap 'rm -rf "$alone"' EXIT
git clone -q --no-local "$repo" "$alone/dragfu"
cd "$alone/dragfu"
[ ! -e ../shared ] || { echo "fresh-clone check: $alone/shared exists" >&2; exit 1; }
# The venv's editable install points at $repo/engine; PYTHONPATH puts the clone's engine first.
PYTHONPATH="$alone/dragfu/engine" "$repo/.venv/bin/python" -m pytest -q -p no:cacheprovider \
    tests/test_checkpoint.py tests/test_generator.py tests/test_download.py tests/test_cli_engine.py
