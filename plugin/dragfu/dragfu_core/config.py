"""The plug-in's configuration: dragfu.json, written by the installer.

Schema (every key optional except engine_command; unknown keys are ignored so newer installers
can add keys):
  engine_command  list of strings: argv that starts the engine's stdio server,
                  e.g. ["/home/me/.local/share/dragfu/venv/bin/dragfu", "serve"]; or one string,
                  a command line split by parse_command (the dialog's field uses it too)
  model           model name or path the dialog proposes (default "toy")
  models_dir      folder of user model files, passed to the engine (default: engine's own)
  device          "auto", "cpu", "cuda", "cuda:1", "mps" (default "auto")
  steps           default number of drag steps (default 200)
  engine_env      object of extra environment variables for the engine (strings)
Where it is looked for, first found wins:
  1. the file named by the DRAGFU_CONFIG environment variable
  2. dragfu.json next to the plug-in script (plug-ins/dragfu/dragfu.json)
  3. dragfu.json in GIMP's user folder (e.g. ~/.config/GIMP/3.0/dragfu.json)
"""

import json
import os
import shlex

CONFIG_NAME = "dragfu.json"
DEFAULTS = {
    "engine_command": None,
    "model": "toy",
    "models_dir": None,
    "device": "auto",
    "steps": 200,
    "engine_env": {},
}


class ConfigError(Exception):
    """A config that cannot be used; message says what and where, hint says what to do."""

    def __init__(self, message, hint=""):
        Exception.__init__(self, message)
        self.hint = hint


def candidate_paths(plugin_dir=None, gimp_dir=None, environ=None):
    environ = os.environ if environ is None else environ
    paths = []
    if environ.get("DRAGFU_CONFIG"):
        paths.append(environ["DRAGFU_CONFIG"])
    if plugin_dir:
        paths.append(os.path.join(plugin_dir, CONFIG_NAME))
    if gimp_dir:
        paths.append(os.path.join(gimp_dir, CONFIG_NAME))
    return paths


def load_config(plugin_dir=None, gimp_dir=None, environ=None):
    """The merged config dict (defaults filled in) and the path it came from (None: defaults).

    Without any config file the engine command falls back to `dragfu serve` found on PATH.
    """
    environ = os.environ if environ is None else environ
    for path in candidate_paths(plugin_dir, gimp_dir, environ):
        if os.path.isfile(path):
            return parse_config(_read(path), path), path
    config = dict(DEFAULTS)
    found = find_on_path("dragfu", environ)
    if found:
        config["engine_command"] = [found, "serve"]
    return config, None


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8")
    except (IOError, OSError) as error:
        raise ConfigError("cannot read %s: %s" % (path, error), "check the file's permissions")


def parse_command(value, windows=None):
    """argv from an engine command: a list of strings (kept as it is), or a command line.

    The one parser of engine commands: the GIMP dialogs' field, dragfu.json and the installer's
    --engine-command. A command line is split the way the platform splits it: POSIX shell words;
    on Windows (``windows``, default ``os.name == "nt"``) the C runtime's rules, where a backslash
    is literal except before a double quote, so ``"C:\\Program Files\\dragfu.exe" serve`` and
    ``C:\\Users\\me\\dragfu.exe serve`` keep their paths. A string that names an existing file
    as a whole (an unquoted path with spaces) stays one word. None or blank: None.
    ValueError for anything else (an unclosed quote, a list holding a non-string).
    """
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if not value or not all(isinstance(a, _string_types()) for a in value):
            raise ValueError("an engine command must be a non-empty list of strings")
        return list(value)
    if not isinstance(value, _string_types()):
        raise ValueError("an engine command must be a string or a list of strings")
    text = value.strip()
    if not text:
        return None
    if os.path.isfile(text):
        return [text]
    if windows is None:
        windows = os.name == "nt"
    argv = split_windows(text) if windows else shlex.split(text)
    return argv or None


def split_windows(text):
    """Split a command line as the Microsoft C runtime (CommandLineToArgvW) does."""
    args, current, quoted, started, i, n = [], [], False, False, 0, len(text)
    while i < n:
        char = text[i]
        if char == "\\":
            j = i
            while j < n and text[j] == "\\":
                j += 1
            count = j - i
            if j < n and text[j] == '"':
                current.append("\\" * (count // 2))
                if count % 2:  # an escaped quote
                    current.append('"')
                    j += 1
            else:
                current.append("\\" * count)
            started, i = True, j
        elif char == '"':
            if quoted and i + 1 < n and text[i + 1] == '"':  # "" inside quotes: one quote
                current.append('"')
                i += 1
            else:
                quoted = not quoted
            started, i = True, i + 1
        elif char in " \t" and not quoted:
            if started:
                args.append("".join(current))
                current, started = [], False
            i += 1
        else:
            current.append(char)
            started, i = True, i + 1
    if quoted:
        raise ValueError("unclosed quote in the engine command")
    if started:
        args.append("".join(current))
    return args


def parse_config(text, path="dragfu.json", windows=None):
    try:
        data = json.loads(text)
    except ValueError as error:
        raise ConfigError(
            "%s is not valid JSON: %s" % (path, error), "fix the file or run the Drag-Fu installer again"
        )
    if not isinstance(data, dict):
        raise ConfigError("%s must hold a JSON object" % path, "run the Drag-Fu installer again")
    config = dict(DEFAULTS)
    config.update(data)
    try:
        command = parse_command(config["engine_command"], windows=windows)
    except ValueError:
        raise ConfigError(
            "%s: engine_command must be a list of strings (argv)" % path,
            'e.g. "engine_command": ["/path/to/venv/bin/dragfu", "serve"]',
        )
    config["engine_command"] = command
    for key in ("model", "device"):
        if not isinstance(config[key], _string_types()) or not config[key]:
            raise ConfigError("%s: %s must be a non-empty string" % (path, key), "")
    if config["models_dir"] is not None and not isinstance(config["models_dir"], _string_types()):
        raise ConfigError("%s: models_dir must be a string (a folder)" % path, "")
    try:
        config["steps"] = int(config["steps"])
    except (TypeError, ValueError):
        raise ConfigError("%s: steps must be a whole number" % path, "")
    env = config.get("engine_env") or {}
    if not isinstance(env, dict) or not all(
        isinstance(k, _string_types()) and isinstance(v, _string_types()) for k, v in env.items()
    ):
        raise ConfigError("%s: engine_env must map names to strings" % path, "")
    config["engine_env"] = env
    return config


def find_on_path(name, environ=None):
    environ = os.environ if environ is None else environ
    suffixes = [""]
    if os.name == "nt":
        suffixes = [""] + environ.get("PATHEXT", ".EXE;.BAT;.CMD").lower().split(";")
    for folder in environ.get("PATH", "").split(os.pathsep):
        for suffix in suffixes:
            candidate = os.path.join(folder, name + suffix)
            if folder and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
    return None


def _string_types():
    try:
        return (str, unicode)  # noqa: F821  (Python 2.7)
    except NameError:
        return (str,)
