"""How a run reports progress: per stage, per frame, and per chunk of frames on a cluster.

The CLI passes a rich-backed one (or JSON lines for the web page), tests a silent one.
"""

from __future__ import annotations


class Progress:
    def stage(self, name: str, total: int | None = None) -> None: ...
    def advance(self, done: int, total: int) -> None: ...
    def note(self, text: str) -> None: ...
    def end(self) -> None: ...

    def plan(self, seconds: dict[str, float], first_frame: int) -> None:
        """The predicted seconds of every stage still to run (eta.py), and the number of
        the shot's first frame (the render and dust stages count frames from it)."""

    def warn(self, text: str) -> None:
        """Something the artist must see even when progress is quiet (a clamped box)."""

    def chunk(self, shot: str, first: int, last: int, state: str, worker: str = "", done: int = 0,
              total: int = 0) -> None:
        """A chunk of frames first..last (frame numbers) of a shot changed state: queued,
        running, done, retried (its worker was lost) or failed; done/total: frames of the
        shot finished so far."""
