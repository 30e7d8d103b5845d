"""The review movie's encoder runs in its own fresh process: its failures come back as one
line, its movie is published by the caller (synced, then renamed), and nothing is left
half-written."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from derrumbe.errors import DerrumbeError
from derrumbe.stages.movies import encode_movies


def _frames(tmp_path, n=4):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = tmp_path / f"f.{1001 + i}.png"
        cv2.imwrite(str(p), cv2.GaussianBlur((rng.random((90, 160, 3)) * 255).astype(np.uint8), (0, 0), 2))
        paths.append(p)
    return paths


def test_a_damaged_frame_is_one_line_from_the_encoders_process_and_no_movie_is_left(tmp_path):
    frames = _frames(tmp_path)
    frames[2].write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DerrumbeError) as e:
        encode_movies(out, "shot_v001", frames, 24, (160, 90), ("h264", "prores"))
    assert str(e.value) == "cannot read back f.1003.png; render its frames again"
    assert list(out.iterdir()) == []                      # neither movie, nor a temporary file


def test_the_movies_come_back_whole_and_the_same_from_two_encodes(tmp_path):
    frames = _frames(tmp_path)
    seen = []
    for k in range(2):
        out = tmp_path / f"out{k}"
        out.mkdir()
        progress = []
        made = encode_movies(out, "shot_v001", frames, 24, (160, 90), ("h264", "prores"),
                             progress=lambda a, b: progress.append((a, b)))
        assert [p.name for p in made] == ["shot_v001.mp4", "shot_v001.mov"]
        assert sorted(p.name for p in out.iterdir()) == ["shot_v001.mov", "shot_v001.mp4"]
        assert progress[-1] == (4, 4)
        seen.append([p.read_bytes() for p in made])
    assert seen[0] == seen[1]
    import av
    with av.open(str(tmp_path / "out0" / "shot_v001.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 4


def test_a_failure_after_one_movie_finished_comes_up_as_itself_and_leaves_no_temporary(tmp_path, monkeypatch):
    """The second movie fails as it finishes, after the first has been closed: dropping the
    first (whose container, closed already, refuses a second close) must not raise over
    the real error, and neither temporary file is left."""
    from derrumbe.stages import movies
    frames = _frames(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    real_finish = movies.MovieWriter.finish
    calls = []

    class Closed:
        def close(self):
            raise ValueError("I/O operation on a closed container")

    def finish(self):
        calls.append(self.path.name)
        if len(calls) == 2:
            raise OSError("disk full (injected)")
        tmp = real_finish(self)
        self.container = Closed()
        return tmp

    monkeypatch.setattr(movies.MovieWriter, "finish", finish)
    with pytest.raises(OSError, match="disk full"):
        movies._encode_here(out, "shot_v001", frames, 24, (160, 90), ("h264", "prores"))
    assert len(calls) == 2
    assert list(out.iterdir()) == []
