"""Hundreds of random and malformed specs and uploads at the web API and the CLI, seeded
and within a fixed time budget: no 500, no traceback, every error one line.

The values are drawn from what breaks parsers: non-finite and huge numbers, numbers as
text, wrong types, nesting, markup, NUL bytes, very long strings, paths; the uploads from
real image/video headers cut short, lying about their size, or followed by junk."""

from __future__ import annotations

import json
import random
import struct
import time
import zlib

import cv2
import numpy as np
import pytest

from derrumbe.cli import main
from derrumbe.spec import ShotSpec

SEED = 1717
BUDGET_S = 20.0                 # each of the two fuzzers
MIN_CASES = 300
FIELDS = [f for f in ShotSpec.__dataclass_fields__]
JUNK_KEYS = ["", "__proto__", "plate ", "x" * 300, "constructor", "0"]
NASTY = [None, True, False, 0, -1, 1, 7, 2**31, 2**63, 10**400, 1e308, -1e308, float("inf"), float("-inf"),
         float("nan"), 0.5, -0.0, 1e-320, "", " ", "x", "1,2,3,4", "0,0,inf,10", "inf", "-inf", "nan", "1e400",
         "Infinity", "640x360", "640x", "x360", "0x0", "99999999999x1", "implosion", "topple", "<script>alert(1)</script>",
         '<img src=x onerror="alert(1)">', "\x00", "a\x00b", "\n\n", "é" * 50, "a" * 10_000, "../../etc/passwd",
         "/etc/passwd", "sRGB Encoded Rec.709 (sRGB)", "ACEScg", [], [1], [1, 2], [1, 2, 3], [1, 2, 3, 4],
         [0, 0, 50, 50], [1e308] * 4, [float("inf")] * 3, ["a", "b", "c"], [[1, 2], 3, 4, 5], {}, {"a": 1},
         {"model": "x"}, [[[[]]]]]


def _value(rng: random.Random):
    v = rng.choice(NASTY)
    if rng.random() < 0.15:
        v = rng.uniform(-1e6, 1e6) if rng.random() < 0.5 else rng.randint(-10**6, 10**6)
    return v


def _spec(rng: random.Random) -> dict:
    keys = rng.sample(FIELDS, rng.randint(0, 6)) + (rng.sample(JUNK_KEYS, 1) if rng.random() < 0.1 else [])
    return {k: _value(rng) for k in keys}


# ---- uploads --------------------------------------------------------------------------------

def _png(w, h, body=b""):
    def chunk(t, data):
        return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(body)) + chunk(b"IEND", b"")


def _uploads(plate_png: bytes, jpeg: bytes):
    """Callables rng -> bytes: real plates damaged in every way a file can be."""
    mp4 = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"
    return [
        lambda r: plate_png,
        lambda r: jpeg,
        lambda r: plate_png[:r.randint(0, len(plate_png))],
        lambda r: jpeg[:r.randint(0, len(jpeg))],
        lambda r: plate_png[:100] + bytes(r.getrandbits(8) for _ in range(r.randint(0, 3000))),
        lambda r: jpeg[:200] + bytes(r.getrandbits(8) for _ in range(r.randint(0, 3000))),
        lambda r: _png(r.choice([0, 1, 31, 40000, 50000, 2**31 - 1, 2**32 - 1]), r.choice([0, 1, 100, 50000])),
        lambda r: _png(64, 64, b"\0" * r.randint(0, 20000)),
        lambda r: _png(20000, 100, b"\0" * 100),
        lambda r: b"v/1\x01" + bytes(r.getrandbits(8) for _ in range(r.randint(0, 2000))),
        lambda r: mp4 + bytes(r.getrandbits(8) for _ in range(r.randint(0, 5000))),
        lambda r: b"\x1a\x45\xdf\xa3" + bytes(r.getrandbits(8) for _ in range(r.randint(0, 5000))),
        lambda r: b"II*\x00" + bytes(r.getrandbits(8) for _ in range(r.randint(0, 2000))),
        lambda r: bytes(r.getrandbits(8) for _ in range(r.randint(0, 5000))),
        lambda r: b"",
    ]


@pytest.fixture(scope="module")
def plates(small_plate):
    png, box = small_plate
    jpeg = cv2.imencode(".jpg", cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR))[1].tobytes()
    return png, jpeg, box


def _check_response(r, what):
    assert r.status_code < 500, (what, r.status_code, r.text[:300])
    if r.status_code >= 400:
        detail = r.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail and len(detail) <= 500, (what, detail[:300])


def test_fuzz_the_web_api(tmp_path, plates):
    pytest.importorskip("fastapi", reason="the web extra is not installed: make web")
    from fastapi.testclient import TestClient
    from derrumbe.web.app import create_app
    png, jpeg, box = plates
    origin = "http://127.0.0.1:8000"
    rng = random.Random(SEED)
    uploads = _uploads(png, jpeg)
    counts = {"cases": 0, "2xx": 0, "4xx": 0}
    with TestClient(create_app(tmp_path, workers=0), base_url=origin, headers={"Origin": origin},
                    raise_server_exceptions=False) as c:
        plate_id = c.post("/api/plates", content=png).json()["id"]
        job_ids = ["000000000000", "../../etc", "x" * 50]
        t0 = time.time()
        while time.time() - t0 < BUDGET_S and counts["cases"] < 800:
            kind = rng.random()
            if kind < 0.45:                         # a job
                body = {k: _value(rng) for k in rng.sample(["plate", "kind", "box", "mask", "holdout", "exr", "usd",
                                                            "prores", "burn_in"], rng.randint(0, 5))}
                if rng.random() < 0.7:
                    body["plate"] = plate_id
                if rng.random() < 0.6:
                    body["box"] = box if rng.random() < 0.5 else body.get("box")
                body["spec"] = _spec(rng) if rng.random() < 0.85 else _value(rng)
                path = "/api/jobs"
            elif kind < 0.6:                        # a wedge
                body = {"plate": plate_id, "box": box, "spec": _spec(rng), "param": rng.choice(
                    ["seed", "style", "dust", "pieces", "plate", "", None, 3]),
                    "values": rng.choice([[_value(rng) for _ in range(rng.randint(0, 14))], _value(rng)])}
                path = "/api/wedges"
            elif kind < 0.85:                       # an upload
                data = rng.choice(uploads)(rng)
                r = c.post("/api/plates", content=data)
                _check_response(r, ("upload", data[:40]))
                counts["cases"] += 1
                counts["2xx" if r.status_code < 300 else "4xx"] += 1
                continue
            else:                                   # anything else, by id
                jid = rng.choice(job_ids)
                method, path = rng.choice([("get", f"/api/jobs/{jid}"), ("post", f"/api/jobs/{jid}/cancel"),
                                           ("post", f"/api/jobs/{jid}/promote"), ("get", f"/api/jobs/{jid}/zip/x"),
                                           ("get", f"/api/jobs/{jid}/files/{rng.choice(['a', '..', '%2e'])}"),
                                           ("get", f"/api/wedges/{jid}/sheet.png"), ("get", f"/api/plates/{jid}")])
                r = c.request(method, path, json={} if method == "post" else None)
                _check_response(r, (method, path))
                counts["cases"] += 1
                counts["2xx" if r.status_code < 300 else "4xx"] += 1
                continue
            raw = json.dumps(body, allow_nan=True).encode()
            if rng.random() < 0.1:
                raw = raw[:rng.randint(0, len(raw))]                    # cut short
            ctype = rng.choice(["application/json"] * 8 + ["text/plain", "application/x-www-form-urlencoded", ""])
            r = c.post(path, content=raw, headers={"Content-Type": ctype} if ctype else {})
            _check_response(r, (path, raw[:300]))
            if r.status_code == 200 and path == "/api/jobs":
                job_ids.append(r.json()["id"])
            counts["cases"] += 1
            counts["2xx" if r.status_code < 300 else "4xx"] += 1
    print(f"web fuzz: {counts}")
    assert counts["cases"] >= MIN_CASES, counts
    assert counts["2xx"] > 10 and counts["4xx"] > 100, counts     # both paths were exercised


def _cli_args(rng: random.Random, d, out) -> list[str]:
    if rng.random() < 0.15:                                     # a TOML or JSON spec file
        spec = _spec(rng)
        if rng.random() < 0.7:
            spec.update(plate=str(d / "plate.png"), box=[0, 0, 50, 50])
        f = d / f"spec{rng.randint(0, 9)}.{rng.choice(['toml', 'json'])}"
        if f.suffix == ".json" or rng.random() < 0.2:
            text = json.dumps(spec, allow_nan=True, default=str)
        else:
            try:
                import tomli_w
                text = tomli_w.dumps({k: v for k, v in spec.items() if v is not None})
            except (TypeError, ValueError):
                text = "plate = [1, 2\n"
        f.write_text(text[:rng.randint(0, len(text))] if rng.random() < 0.1 else text)
        return ["shot", "--spec", str(f), "-o", str(out), "--explain", "-q"]
    args = ["shot", str(d / "plate.png") if rng.random() < 0.9 else rng.choice(["", "nope.png", str(d)])]
    if rng.random() < 0.8:
        args += ["--box", rng.choice(["0,0,50,50", "10,10,100,100"])]
    for _ in range(rng.randint(0, 5)):
        name = rng.choice(FIELDS + ["box", "mask", "holdout"])
        if name in ("plate", "refine"):
            continue
        flag = "--" + name.replace("_", "-")
        v = _value(rng)
        if isinstance(v, (list, dict)):
            v = ",".join(map(str, v)) if isinstance(v, list) else json.dumps(v)
        if isinstance(v, bool) or v is None:
            args.append(flag)
            continue
        args += [flag, str(v).replace("\x00", "")]
    return args + ["-o", str(out), "--explain", "-q"]


def test_fuzz_the_cli(tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    cv2.imwrite(str(d / "plate.png"), np.full((120, 160, 3), 128, np.uint8))
    rng = random.Random(SEED + 1)
    counts = {"cases": 0, "ok": 0, "refused": 0}
    t0 = time.time()
    while time.time() - t0 < BUDGET_S and counts["cases"] < 800:
        args = _cli_args(rng, d, tmp_path / "out")
        try:
            rc = main(args)
        except SystemExit as e:                 # argparse's own errors
            rc = e.code
        err = capsys.readouterr().err
        assert rc in (0, 2), (args, rc, err[-500:])
        if rc == 2:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("derrumbe: error: "), (args, err[-500:])
            assert "Traceback" not in err
        counts["cases"] += 1
        counts["ok" if rc == 0 else "refused"] += 1
    print(f"CLI fuzz: {counts}")
    assert counts["cases"] >= MIN_CASES, counts
    assert counts["ok"] > 5 and counts["refused"] > 100, counts
