"""Drag-Fu plug-in core: host-independent, standard library only, Python 2.7 and 3.x.

The GIMP 3 adapter (plugin/dragfu/dragfu.py) and the GIMP 2.10 adapter
(plugin/gimp2/dragfu_gimp2.py) only move data between GIMP and these modules:
  strokes   path strokes (GIMP's 6 floats per anchor) -> drags (handle, waypoints, target)
  geometry  rectangles, the region sent to the model, image <-> layer <-> crop coordinates
  mask      selection -> movable-region mask, feathered blend mask
  composite engine result + source pixels -> the new layer's pixels (outside the mask untouched)
  config    dragfu.json (engine command, model, device) written by the installer
  progress  engine progress events -> progress fraction + stage text
  job       one drag run: the plan, the engine conversation, the composite
"""

__version__ = "0.1.0"
