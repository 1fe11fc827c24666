# -*- coding: utf-8 -*-
"""Typed events of the engine protocol (stdlib only; Python 2.7 and 3.x), both ways.

The engine builds its ``progress``/``result``/``error`` headers with these classes; the client
turns each frame it reads into one of them (``event_from_frame``). Each is a ``Frame`` (``header``,
``parts``), so code that reads ``event.header["step"]`` keeps working, with typed attributes on
top: ``ProgressEvent.stage/step/total/points/distances/preview``, ``Result.request/image``,
``ErrorEvent.code/message/hint``.
"""

from __future__ import absolute_import, division, print_function, unicode_literals

from .frames import Frame

__all__ = ["Event", "ProgressEvent", "Result", "ErrorEvent", "event_from_frame"]


class Event(Frame):
    """An event about the request ``id``: a frame whose ``type`` is the class's ``TYPE``."""

    TYPE = None

    @classmethod
    def from_frame(cls, frame):
        return cls(frame.header, frame.parts)

    @property
    def request_id(self):
        return self.header.get("id")

    def __repr__(self):
        return "%s(%r, parts=%r)" % (type(self).__name__, self.header, sorted(self.parts))


class ProgressEvent(Event):
    """Zero or more per request: ``stage`` (load, project, drag), ``step`` of ``total``."""

    TYPE = "progress"

    @classmethod
    def build(cls, request_id, stage, step, total, **fields):
        header = {"type": cls.TYPE, "id": request_id, "stage": stage, "step": step, "total": total}
        header.update(fields)
        return cls(header)

    @property
    def stage(self):
        return self.header.get("stage", "")

    @property
    def step(self):
        return self.header.get("step", 0)

    @property
    def total(self):
        return self.header.get("total", 0)

    @property
    def points(self):
        """A drag's current handle positions, [[x, y], ...] (sent-image coordinates)."""
        return self.header.get("points") or []

    @property
    def distances(self):
        return self.header.get("distances") or []

    @property
    def preview(self):
        """The preview image Part, or None."""
        return self.parts.get("preview")


class Result(Event):
    """The request's last event when it succeeded; ``request`` is the request type it answers."""

    TYPE = "result"

    @classmethod
    def build(cls, request_id, request, **fields):
        header = {"type": cls.TYPE, "id": request_id, "request": request}
        header.update(fields)
        return cls(header)

    @property
    def request(self):
        return self.header.get("request", "")

    @property
    def image(self):
        """The ``image`` Part, or None."""
        return self.parts.get("image")


class ErrorEvent(Event):
    """The request's last event when it failed: a stable ``code``, a one-line ``message``, a ``hint``."""

    TYPE = "error"

    @classmethod
    def build(cls, request_id, code, message, hint=""):
        header = {"type": cls.TYPE, "id": request_id, "code": code, "message": message}
        if hint:
            header["hint"] = hint
        return cls(header)

    @property
    def code(self):
        return self.header.get("code", "error")

    @property
    def message(self):
        return self.header.get("message", "")

    @property
    def hint(self):
        return self.header.get("hint", "")


_BY_TYPE = dict((cls.TYPE, cls) for cls in (ProgressEvent, Result, ErrorEvent))


def event_from_frame(frame):
    """The frame as its typed event (a plain ``Event`` for a type this client does not know)."""
    return _BY_TYPE.get(frame.type, Event).from_frame(frame)
