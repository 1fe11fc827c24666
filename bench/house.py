"""House measurements: lines per part of the checkout, the largest file and function (ast).

    python -m bench.house [--root CHECKOUT] [--json]

Lines are physical lines of *.py and *.sh files; parts: engine package (engine/dragfu), bench,
plugin, install, tests. A function's size is end_lineno - lineno + 1 of its `def` (nested
functions count inside their parent and on their own). Sources ast cannot parse (the GIMP 2.10
plug-in's Python 2) count for lines only.
"""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = {
    "engine package": "engine/dragfu",
    "bench": "bench",
    "plugin": "plugin",
    "install": "install",
    "tests": "tests",
}


def source_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in (".py", ".sh") and p.is_file())


def lines_of(path: Path) -> int:
    return len(path.read_text(encoding="utf-8", errors="replace").splitlines())


def longest_function(path: Path) -> tuple[int, str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError):
        return 0, ""
    best = (0, "")
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            best = max(best, (node.end_lineno - node.lineno + 1, node.name))
    return best


def measure(root: Path = ROOT) -> dict:
    parts = {}
    for name, rel in PARTS.items():
        files = source_files(root / rel)
        largest_file, largest_function = (0, ""), (0, "")
        for path in files:
            shown = path.relative_to(root).as_posix()
            largest_file = max(largest_file, (lines_of(path), shown))
            size, func = longest_function(path)
            if size:
                largest_function = max(largest_function, (size, f"{shown}:{func}"))
        parts[name] = {
            "files": len(files),
            "lines": sum(lines_of(p) for p in files),
            "largest_file": {"path": largest_file[1], "lines": largest_file[0]},
            "largest_function": {"name": largest_function[1], "lines": largest_function[0]},
        }
    return {"parts": parts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.house", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout (default: this one)")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args(argv)
    result = measure(args.root)
    if args.json:
        print(json.dumps(result))
        return 0
    print("| part | files | lines | largest file | largest function |")
    print("| --- | ---: | ---: | --- | --- |")
    for name, part in result["parts"].items():
        f, g = part["largest_file"], part["largest_function"]
        print(f"| {name} | {part['files']} | {part['lines']} | `{f['path']}` ({f['lines']}) "
              f"| `{g['name']}` ({g['lines']}) |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
