"""Bad input: one line on stderr naming the problem, non-zero exit, no traceback, no manifest."""

import errno
import io
import os
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest


def _run(args, cwd):
    return subprocess.run([sys.executable, "-m", "derrumbe"] + args, cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    img = np.full((120, 160, 3), 128, np.uint8)
    cv2.imwrite(str(d / "plate.png"), img)
    cv2.imwrite(str(d / "small_mask.png"), np.full((60, 80), 255, np.uint8))
    cv2.imwrite(str(d / "empty_mask.png"), np.zeros((120, 160), np.uint8))
    (d / "notimage.png").write_text("this is not an image")
    (d / "afile").write_text("x")
    # A PNG that declares 50000x50000 (a few hundred bytes), and a 1 MB one that really
    # decodes to 20000x20000 (2.5 GB of floats once read): both refused from the header.
    (d / "declares_huge.png").write_bytes(_png(50000, 50000, zlib.compress(b"\0" * 1000)))
    z = zlib.compressobj(9)
    row = b"\0" * (1 + 20000 * 3)
    (d / "bomb.png").write_bytes(_png(20000, 20000, b"".join(z.compress(row) for _ in range(20000)) + z.flush()))
    assert (d / "bomb.png").stat().st_size < 2_000_000
    cv2.imwrite(str(d / "panorama.png"), np.full((100, 20000, 3), 90, np.uint8))
    (d / "list.json").write_text("[1, 2, 3]")
    (d / "bad_types.toml").write_text('plate = "plate.png"\nbox = [0, 0, 50, 50]\npieces = "lots"\n')
    (d / "binary.toml").write_bytes(b"\xff\xfe\x00garbage")
    (d / "inf.toml").write_text('plate = "plate.png"\nbox = [0, 0, 50, 50]\nfps = inf\n')
    return d


def _png(w, h, idat):
    def chunk(t, data):
        return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", idat) + chunk(b"IEND", b"")


CASES = {
    "missing plate": (["shot", "{d}/nope.jpg", "--box", "0,0,10,10"], "does not exist"),
    "not an image": (["shot", "{d}/notimage.png", "--box", "0,0,10,10"], "not a readable image"),
    "box outside": (["shot", "{d}/plate.png", "--box", "500,500,900,900"], "outside"),
    "zero-area box": (["shot", "{d}/plate.png", "--box", "10,10,10,50"], "zero area"),
    "mask of another size": (["shot", "{d}/plate.png", "--mask", "{d}/small_mask.png"], "80x60"),
    "empty mask": (["shot", "{d}/plate.png", "--mask", "{d}/empty_mask.png"], "empty"),
    "negative duration": (["shot", "{d}/plate.png", "--box", "0,0,50,50", "--duration", "-3"], "--duration"),
    "fps 0": (["shot", "{d}/plate.png", "--box", "0,0,50,50", "--fps", "0"], "--fps"),
    "ten million pieces": (["shot", "{d}/plate.png", "--box", "0,0,50,50", "--pieces", "10000000"], "--pieces"),
    "size off aspect": (["shot", "{d}/plate.png", "--box", "0,0,50,50", "--size", "640x640"], "aspect"),
    "no box nor mask": (["shot", "{d}/plate.png"], "--box"),
    "not a number": (["shot", "{d}/plate.png", "--box", "0,0,50,50", "--fps", "fast"], "--fps"),
    "wind without heading": (["shot", "{d}/plate.png", "--box", "0,0,50,50", "--wind", "3"], "--wind"),
    "hurricane": (["shot", "{d}/plate.png", "--box", "0,0,50,50", "--wind", "90,0"], "--wind"),
    "dust colour out of range": (["shot", "{d}/plate.png", "--box", "0,0,50,50", "--dust-color", "300,0,0"],
                                 "--dust-color"),
    "negative dust": (["shot", "{d}/plate.png", "--box", "0,0,50,50", "--dust", "-1"], "--dust"),
    # Non-finite and out-of-range numbers (each was a traceback, exit 1).
    "infinite pieces": (["shot", "{d}/plate.png", "--box", "0,0,50,50", "--pieces", "inf"], "--pieces"),
    "seed 1e400": (["shot", "{d}/plate.png", "--box", "0,0,50,50", "--seed", "1e400"], "--seed"),
    "infinite fps": (["shot", "{d}/plate.png", "--box", "0,0,50,50", "--fps", "inf"], "--fps"),
    "infinite box": (["shot", "{d}/plate.png", "--box", "0,0,inf,10"], "--box"),
    "infinite dust colour": (["shot", "{d}/plate.png", "--box", "0,0,50,50", "--dust-color", "inf,0,0"],
                             "--dust-color"),
    "horizon 1e308": (["shot", "{d}/plate.png", "--box", "0,0,50,50", "--horizon-y", "1e308"], "--horizon-y"),
    "wind heading 1e308": (["shot", "{d}/plate.png", "--box", "0,0,50,50", "--wind", "1,1e308"], "--wind"),
    "box 1e308": (["shot", "{d}/plate.png", "--box", "1e308,0,5,5"], "--box"),
    "three-number box": (["shot", "{d}/plate.png", "--box", "1,2,3"], "--box"),
    "name with a path": (["shot", "{d}/plate.png", "--box", "0,0,50,50", "--name", "../../etc/x"], "--name"),
    "unknown colour space": (["shot", "{d}/plate.png", "--box", "0,0,50,50", "--plate-colorspace",
                              "<img src=x onerror=alert(1)>"], "--plate-colorspace"),
    # Pixels, checked from the header before anything decodes.
    "PNG declaring 50000x50000": (["shot", "{d}/declares_huge.png", "--box", "0,0,50,50"], "Mpx"),
    "1 MB PNG decoding to 20000x20000": (["shot", "{d}/bomb.png", "--box", "0,0,50,50"], "Mpx"),
    "20000x100 panorama": (["shot", "{d}/panorama.png", "--box", "0,0,50,50", "--preview"], "aspect"),
    "mask decoding to 20000x20000": (["shot", "{d}/plate.png", "--mask", "{d}/bomb.png"], "Mpx"),
    # Specs that are not tables of fields.
    "JSON spec that is a list": (["shot", "--spec", "{d}/list.json"], "spec"),
    "TOML spec with a wrong type": (["shot", "--spec", "{d}/bad_types.toml"], "--pieces"),
    "binary spec": (["shot", "--spec", "{d}/binary.toml"], "not valid TOML"),
    "TOML spec with inf": (["shot", "--spec", "{d}/inf.toml"], "--fps"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gets_one_clear_line(case, files, tmp_path):
    args, needle = CASES[case]
    out = tmp_path / "out"
    r = _run([a.format(d=files) for a in args] + ["-o", str(out), "-q"], tmp_path)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert needle in lines[0]
    assert "Traceback" not in r.stderr
    assert r.returncode == 2
    assert not (out / "manifest.json").exists()


def test_unwritable_output_folder(files, tmp_path):
    r = _run(["shot", f"{files}/plate.png", "--box", "0,0,150,110", "-o", f"{files}/afile/sub", "-q"], tmp_path)
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1 and "cannot write" in r.stderr


def test_a_full_disk_is_one_line_and_leaves_no_partial_file(files, tmp_path, capsys, monkeypatch):
    """The fault: every write of the render fails with ENOSPC, as on a full disk."""
    from derrumbe.cli import main
    real_fdopen = os.fdopen

    class FullDisk(io.RawIOBase):
        def __init__(self, fd):
            self.fd = fd

        def writable(self):
            return True

        def write(self, b):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            if not self.closed:
                os.close(self.fd)
            super().close()

    def fdopen(fd, mode="r", *a, **kw):
        return FullDisk(fd) if "w" in mode else real_fdopen(fd, mode, *a, **kw)
    monkeypatch.setattr(os, "fdopen", fdopen)
    out = tmp_path / "out"
    rc = main(["shot", f"{files}/plate.png", "--box", "0,0,150,110", "-o", str(out), "-q", "--size", "64",
               "--duration", "1", "--start", "0.2", "--pieces", "300"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "No space left on device" in err, err
    assert str(tmp_path) not in err
    left = [p.name for p in out.rglob("*") if p.is_file() and p.name != "lock"]
    assert left == [], left                     # no temporary and no half-written file


def test_running_out_of_memory_is_one_line(files, tmp_path, capsys, monkeypatch):
    import derrumbe.pipeline
    from derrumbe.cli import main

    def no_memory(*a, **kw):
        raise MemoryError()
    monkeypatch.setattr(derrumbe.pipeline, "run_shot", no_memory)
    rc = main(["shot", f"{files}/plate.png", "--box", "0,0,150,110", "-o", str(tmp_path / "o"), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "out of memory" in err


def test_the_token_comes_from_a_file_or_the_environment_not_the_command_line(tmp_path, capsys, monkeypatch):
    from derrumbe.cli import _token, build_parser
    monkeypatch.delenv("DERRUMBE_TOKEN", raising=False)
    (tmp_path / "token").write_text("0123456789abcdef0123\n")
    args = build_parser().parse_args(["serve", "--token-file", str(tmp_path / "token")])
    assert _token(args) == "0123456789abcdef0123"
    (tmp_path / "short").write_text("abc")
    with pytest.raises(Exception, match="shorter than 16"):
        _token(build_parser().parse_args(["serve", "--token-file", str(tmp_path / "short")]))
    monkeypatch.setenv("DERRUMBE_TOKEN", "from-the-environment-123")
    assert _token(build_parser().parse_args(["serve"])) == "from-the-environment-123"
    capsys.readouterr()
    assert _token(build_parser().parse_args(["serve", "--token", "on-the-command-line"])) == "on-the-command-line"
    assert "process list" in capsys.readouterr().err
