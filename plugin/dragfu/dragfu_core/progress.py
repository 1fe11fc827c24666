"""Engine progress events -> one progress fraction and a stage text for GIMP's progress bar.

The run has up to three engine stages (loading the model, projecting the photo, dragging);
each gets a slice of the bar so the bar only moves forward.
"""

# Slices of the progress bar per stage: (start, end).
SLICES = {
    "start": (0.0, 0.02),
    "load_model": (0.02, 0.08),
    "project": (0.08, 0.45),
    "drag": (0.45, 0.97),
    "composite": (0.97, 1.0),
}
LABELS = {
    "start": "starting the engine",
    "load_model": "loading model",
    "project": "projecting the photo",
    "drag": "dragging",
    "composite": "putting the result back",
}


def stage_of(name):
    """Map the engine's stage names (and a few synonyms) onto ours."""
    name = (name or "").lower()
    if name.startswith("load") or name == "model":
        return "load_model"
    if name.startswith("project") or name in ("invert", "inversion", "tune", "tuning", "pti"):
        return "project"
    if name.startswith("drag") or name in ("motion", "track", "tracking", "step"):
        return "drag"
    if name.startswith("composit"):
        return "composite"
    return name or "start"


class Progress(object):
    """Keeps the bar monotonic and formats the stage text.

    report(fraction, text) is the host's callback (GIMP's progress_update + set_text).
    """

    def __init__(self, report, prefix="Drag-Fu", skip_projection=False):
        self._report = report
        self._prefix = prefix
        self._last = 0.0
        self.skip_projection = skip_projection

    def stage(self, name, step=None, total=None, **fields):
        stage = stage_of(name)
        start, end = SLICES.get(stage, (self._last, self._last))
        fraction = start
        if step is not None and total:
            fraction = start + (end - start) * max(0.0, min(1.0, float(step) / float(total)))
        fraction = max(self._last, fraction)
        self._last = fraction
        self._report(fraction, self.text(stage, step, total, **fields))
        return fraction

    def text(self, stage, step=None, total=None, **fields):
        label = LABELS.get(stage, stage.replace("_", " "))
        if stage == "load_model" and fields.get("model"):
            label = "%s %s" % (label, fields["model"])
        parts = [label]
        if step is not None and total and total > 1:
            if stage == "drag":
                parts = ["dragging step %d of %d" % (step, total)]
            else:
                parts.append("step %d of %d" % (step, total))
        distance = fields.get("distance")
        if distance is None:
            distance = fields.get("mean_distance")
        if isinstance(distance, (int, float)):
            parts.append("distance %.1f px" % distance)
        per_step = fields.get("seconds_per_step")
        if isinstance(per_step, (int, float)) and per_step > 0:
            parts.append("%.2f s/step" % per_step)
        return "%s: %s" % (self._prefix, ", ".join(parts))
