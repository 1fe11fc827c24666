"""The result layer's `dragfu-source` parasite in the real GIMP 3: the adapter attaches it to the
new layer (persistent), reads it back, leaves the source layer without one, drops it from a
result made without a latent key, and the parasite survives saving and loading the XCF."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

pytestmark = pytest.mark.gimp

SCRIPT = r"""
import importlib.util, json, sys
import gi
gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, Gio
PLUGIN = %(plugin)r
sys.path.insert(0, PLUGIN)
spec = importlib.util.spec_from_file_location("dragfu_adapter", PLUGIN + "/dragfu.py")
adapter = importlib.util.module_from_spec(spec)
spec.loader.exec_module(adapter)
from dragfu_core import geometry, source

image = Gimp.Image.new(64, 48, Gimp.ImageBaseType.RGB)
layer = Gimp.Layer.new(image, "photo", 64, 48, Gimp.ImageType.RGB_IMAGE, 100, Gimp.LayerMode.NORMAL)
image.insert_layer(layer, None, 0)
host = adapter.Gimp3Host(image, layer)
data = source.encode("toy", "ab" * 16, geometry.Rect(2, 3, 40, 30), {"scale": 1.5})
box = geometry.Rect(0, 0, 4, 4)
first = host.insert_result(box, bytearray(4 * 4 * 3), "Drag-Fu: first", [], source=data)
parasite = first.get_parasite(source.PARASITE_NAME)
second = adapter.Gimp3Host(image, first).insert_result(box, bytearray(48), "Drag-Fu: second", [])
def text(item):
    found = adapter.Gimp3Host(image, item).layer_source(source.PARASITE_NAME)
    return None if found is None else found.decode("ascii")
report = {
    "source": text(layer),
    "first": text(first),
    "persistent": bool(parasite.get_flags() & Gimp.PARASITE_PERSISTENT),
    "second": text(second),
}
path = %(xcf)r
Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path(path), None)
loaded = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))
report["loaded"] = {}
for item in loaded.get_layers():
    found = item.get_parasite(source.PARASITE_NAME)
    report["loaded"][item.get_name()] = (
        None if found is None else bytes(bytearray(found.get_data())).decode("ascii")
    )
json.dump(report, open(%(out)r, "w"))
"""


def test_the_source_parasite_is_attached_read_and_kept_in_the_xcf(gimp_mode):
    run = harness.GimpRun(gimp_mode)
    try:
        plugin = run.path("home", ".config", "GIMP", "3.0", "plug-ins", "dragfu")
        script = SCRIPT % {
            "plugin": plugin,
            "xcf": run.path("work", "result.xcf"),
            "out": run.path("work", "report.json"),
        }
        code, output = run.python(script, timeout=300)
        report_path = run.outside("work", "report.json")
        assert os.path.exists(report_path), f"GIMP wrote no report (exit {code}):\n{output[-3000:]}"
        report = json.load(open(report_path))
    finally:
        run.cleanup()
    first = json.loads(report["first"])
    assert first["latent_key"] == "ab" * 16 and first["crop"] == [2, 3, 40, 30]
    assert first["alignment"] == {"scale": 1.5}
    assert report["persistent"] is True
    assert report["source"] is None  # the source layer is never marked
    assert report["second"] is None  # copied from a result, made without a key: dropped
    assert json.loads(report["loaded"]["Drag-Fu: first"])["latent_key"] == "ab" * 16
    assert report["loaded"]["photo"] is None
