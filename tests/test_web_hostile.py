"""The web server against a hostile page or client on this machine: other origins, other
Host names, non-JSON bodies, non-finite and huge values, oversized strings and masks,
too many plates or jobs, videos that hide their length, EXIF-rotated photos, symbolic
links in the work folder, a heavy decode, and server text in the page."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed: make web")
from fastapi.testclient import TestClient  # noqa: E402

from derrumbe.web import app as web_app  # noqa: E402
from derrumbe.web.app import create_app  # noqa: E402

ORIGIN = "http://127.0.0.1:8000"


def _client(root, headers=None, **kw):
    return TestClient(create_app(root, **kw), base_url=ORIGIN,
                      headers={"Origin": ORIGIN} if headers is None else headers)


@pytest.fixture(scope="module")
def plate(small_plate):
    return small_plate


@pytest.fixture()
def web(tmp_path, plate):
    data, box = plate
    with _client(tmp_path, workers=0) as c:
        pid = c.post("/api/plates", content=data).json()["id"]
        yield c, tmp_path, pid, box


def _one_line_error(r, code=400):
    assert r.status_code == code, (r.status_code, r.text[:300])
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and len(detail) <= 500, detail
    return detail


# ---- who may talk to the server -------------------------------------------------------------

def test_unknown_host_headers_are_refused(tmp_path):
    with _client(tmp_path, workers=0) as c:
        for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", "", "[::1"):
            r = c.get("/api/fields", headers={"Host": host})
            assert r.status_code in (400, 421), (host, r.status_code)
        for host in ("127.0.0.1:8000", "localhost:8000", "localhost", "[::1]:8000"):
            assert c.get("/api/fields", headers={"Host": host}).status_code == 200, host
    with _client(tmp_path, workers=0, extra_hosts=["render-box.studio.lan"]) as c:
        assert c.get("/api/fields", headers={"Host": "render-box.studio.lan:8000"}).status_code == 200
        assert c.get("/api/fields", headers={"Host": "other.studio.lan:8000"}).status_code == 421


def test_changes_need_a_same_origin_request_or_the_token(tmp_path, plate):
    data, box = plate
    with _client(tmp_path, headers={}, workers=0) as c:
        # What a page on another origin can send: no Origin (a no-cors upload carries its
        # own), its own Origin, a cross-site fetch.
        for h in ({}, {"Origin": "http://evil.example"}, {"Origin": "null"},
                  {"Origin": ORIGIN, "Sec-Fetch-Site": "cross-site"}):
            r = c.post("/api/plates", content=data, headers=h)
            assert r.status_code == 403, (h, r.status_code)
        assert not any((tmp_path / "plates").glob("*")) if (tmp_path / "plates").exists() else True
        ok = c.post("/api/plates", content=data, headers={"Origin": ORIGIN})
        assert ok.status_code == 200
        assert c.get("/api/jobs").status_code == 200            # reading needs no Origin
    with _client(tmp_path, headers={}, workers=0, token="a-long-enough-token-0123") as c:
        r = c.post("/api/plates", content=data, headers={"Authorization": "Bearer a-long-enough-token-0123"})
        assert r.status_code == 200                              # a script with the token
        r = c.post("/api/plates", content=data, headers={"Origin": "http://evil.example",
                                                         "Cookie": "derrumbe_token=a-long-enough-token-0123"})
        assert r.status_code == 403                              # the page's cookie alone is not enough


def test_json_only_as_application_json(web):
    c, root, pid, box = web
    body = json.dumps({"plate": pid, "box": box})
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        headers = {"Content-Type": ctype} if ctype else {}
        r = c.post("/api/jobs", content=body.encode(), headers=headers)
        _one_line_error(r, 415)
    assert c.get("/api/jobs").json() == []
    r = c.post("/api/jobs", content=body.encode(), headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status_code == 200


# ---- values ---------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("pieces", "Infinity"), ("fps", "Infinity"), ("seed", "Infinity"), ("seed", "1e400"), ("dust", "NaN"),
    ("dust_color", "[Infinity, 0, 0]"), ("wind", "[1, 1e308]"), ("horizon_y", "1e308"), ("horizon_y", "-1e308"),
    ("height_m", "-Infinity"), ("start", "1e400"), ("pieces", "500.5"), ("size", "[1, 2]"), ("style", "{}"),
])
def test_non_finite_and_huge_values_are_a_400(web, field, value):
    c, root, pid, box = web
    raw = '{"plate": "%s", "box": %s, "spec": {"%s": %s}}' % (pid, json.dumps(box), field, value)
    _one_line_error(c.post("/api/jobs", content=raw, headers={"Content-Type": "application/json"}))


@pytest.mark.parametrize("box", ["[0, 0, Infinity, 10]", "[1e308, 0, 5, 5]", "[0, 0, 1e308, 1e308]", '"0,0,5,5,5"',
                                 "[0, 0, 100]", "{}", "[[1], 2, 3, 4]"])
def test_bad_boxes_are_a_400(web, box):
    c, root, pid, _ = web
    raw = '{"plate": "%s", "box": %s}' % (pid, box)
    _one_line_error(c.post("/api/jobs", content=raw, headers={"Content-Type": "application/json"}))


@pytest.mark.parametrize("spec", ["[1, 2]", '"seed=3"', "3", "true"])
def test_a_spec_that_is_not_an_object_is_a_400(web, spec):
    c, root, pid, box = web
    raw = '{"plate": "%s", "box": %s, "spec": %s}' % (pid, json.dumps(box), spec)
    _one_line_error(c.post("/api/jobs", content=raw, headers={"Content-Type": "application/json"}))
    raw = '{"plate": "%s", "box": %s, "param": "seed", "values": [1, 2], "spec": %s}' % (pid, json.dumps(box), spec)
    _one_line_error(c.post("/api/wedges", content=raw, headers={"Content-Type": "application/json"}))


def test_long_strings_are_refused_and_nothing_big_is_stored(web):
    c, root, pid, box = web
    xss = '<img src=x onerror="fetch(\'/api/jobs\')">'
    for value, code in ((xss, 400), ("x" * 1000, 400), ("A" * 20_000_000, 413)):
        r = c.post("/api/jobs", json={"plate": pid, "box": box, "spec": {"plate_colorspace": value}})
        _one_line_error(r, code)
    r = c.post("/api/wedges", json={"plate": pid, "box": box, "param": "style", "values": ["implosion", xss]})
    _one_line_error(r)
    assert c.get("/api/jobs").json() == []
    assert len(c.get("/api/jobs").content) < 100


def test_junk_masks_are_refused_and_not_stored(web, plate):
    c, root, pid, box = web
    junk = "data:image/png;base64," + base64.b64encode(os.urandom(15_000_000)).decode()
    _one_line_error(c.post("/api/jobs", json={"plate": pid, "mask": junk}), 413)
    small_junk = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + os.urandom(5000)).decode()
    _one_line_error(c.post("/api/jobs", json={"plate": pid, "mask": small_junk}))
    # A PNG header of the plate's size over a body that is not a PNG.
    ok = cv2.imencode(".png", np.zeros((180, 320), np.uint8))[1].tobytes()
    lying = "data:image/png;base64," + base64.b64encode(ok[:33] + os.urandom(3000)).decode()
    _one_line_error(c.post("/api/jobs", json={"plate": pid, "mask": lying}))
    _one_line_error(c.post("/api/jobs", json={"plate": pid, "mask": 12345}))
    assert not list((root / "plates" / pid).glob("mask_*"))
    # A real painted mask (RGBA, as the page's canvas sends it) is stored as one 8-bit channel.
    rgba = np.zeros((180, 320, 4), np.uint8)
    rgba[20:170, 100:220] = 255
    url = "data:image/png;base64," + base64.b64encode(cv2.imencode(".png", rgba)[1].tobytes()).decode()
    r = c.post("/api/jobs", json={"plate": pid, "mask": url})
    assert r.status_code == 200, r.text
    stored = list((root / "plates" / pid).glob("mask_*.png"))
    assert len(stored) == 1
    m = cv2.imread(str(stored[0]), cv2.IMREAD_UNCHANGED)
    assert m.shape == (180, 320) and m.dtype == np.uint8 and m[100, 150] == 255 and m[5, 5] == 0


# ---- limits ---------------------------------------------------------------------------------

def test_plate_and_job_counts_are_capped(tmp_path, plate):
    data, box = plate
    with _client(tmp_path, workers=0, max_plates=2, max_pending=3) as c:
        ids = [c.post("/api/plates", content=data).json()["id"] for _ in range(2)]
        _one_line_error(c.post("/api/plates", content=data), 507)
        assert len(list((tmp_path / "plates").iterdir())) == 2
        for i in range(3):
            assert c.post("/api/jobs", json={"plate": ids[0], "box": box, "spec": {"seed": i}}).status_code == 200
        _one_line_error(c.post("/api/jobs", json={"plate": ids[1], "box": box}), 429)
        _one_line_error(c.post("/api/wedges", json={"plate": ids[1], "box": box, "param": "seed",
                                                    "values": [1, 2]}), 429)
        jid = c.get("/api/jobs").json()[0]["id"]
        c.post(f"/api/jobs/{jid}/cancel")
        assert c.post("/api/jobs", json={"plate": ids[1], "box": box}).status_code == 200
        assert len(c.get("/api/jobs").json()) == 4


def _strip_matroska_duration(data: bytes) -> bytes:
    """The Segment Info's Duration element (ID 0x4489, an 8-byte float) overwritten by a
    Void element of the same length: a file that no longer says how long it is."""
    i = data.find(b"\x44\x89\x88")
    assert i > 0
    return data[:i] + b"\xec\x88" + b"\0" * 9 + data[i + 11:]


def _video(path: Path, seconds: float, fps: int = 12, size=(64, 48)):
    import av
    with av.open(str(path), "w", format="matroska") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(int(seconds * fps)):
            f = np.full((size[1], size[0], 3), (i * 5) % 255, np.uint8)
            for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


def test_a_video_that_hides_its_length_is_measured_by_its_frames(tmp_path):
    import av
    path = tmp_path / "long.mkv"
    _video(path, 3.0)
    data = _strip_matroska_duration(path.read_bytes())
    (tmp_path / "nodur.mkv").write_bytes(data)
    with av.open(str(tmp_path / "nodur.mkv")) as c:       # the header no longer gives a length
        assert not c.duration and not c.streams.video[0].duration
    with _client(tmp_path / "root", workers=0, max_seconds=2.0) as c:
        d = _one_line_error(c.post("/api/plates", content=data))
        assert "longer than 2 s" in d
        _video(tmp_path / "short.mkv", 1.5)
        short = _strip_matroska_duration((tmp_path / "short.mkv").read_bytes())
        r = c.post("/api/plates", content=short)
        assert r.status_code == 200 and r.json()["frames"] == 18, r.text


def test_an_exif_rotated_photo_is_boxed_as_it_is_seen(tmp_path):
    from PIL import Image, ImageOps
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (368, 505, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6                                  # stored 505x368, shown turned a quarter: 368x505
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes(), quality=90)
    data = buf.getvalue()
    shown = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    assert shown.size == (368, 505)
    with _client(tmp_path, workers=0) as c:
        meta = c.post("/api/plates", content=data).json()
        assert (meta["width"], meta["height"]) == shown.size
        first = cv2.imdecode(np.frombuffer(c.get(f"/api/plates/{meta['id']}/first.png").content, np.uint8), 1)
        assert first.shape[:2] == (505, 368)
        # A box in the lower part of the picture as seen is taken; one in the stored
        # (unturned) frame's right part, outside what is seen, is refused now, not at render.
        r = c.post("/api/jobs", json={"plate": meta["id"], "box": [20, 400, 300, 500]})
        assert r.status_code == 200, r.text
        _one_line_error(c.post("/api/jobs", json={"plate": meta["id"], "box": [400, 20, 500, 300]}))


# ---- files ----------------------------------------------------------------------------------

def test_symbolic_links_in_the_work_folder_lead_nowhere(tmp_path, plate):
    data, box = plate
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG\r\n\x1a\n secret outside the work folder")
    root = tmp_path / "root"
    with _client(root, workers=0) as c:
        pid = c.post("/api/plates", content=data).json()["id"]
        first = root / "plates" / pid / "first.png"
        first.unlink()
        first.symlink_to(secret)
        assert c.get(f"/api/plates/{pid}/first.png").status_code == 404
        # A finished job whose frame (a name its manifest lists) was swapped for a link.
        jid = c.post("/api/jobs", json={"plate": pid, "box": box}).json()["id"]
        out = root / "jobs" / jid / "out"
        out.mkdir(parents=True)
        (out / "shot.1001.png").symlink_to(secret)
        (out / "manifest.json").write_text(json.dumps({"frames": ["shot.1001.png"], "movie": "shot.mp4",
                                                       "files": {"shot.1001.png": "x"}}))
        c.app.state.store.claim(set())
        c.app.state.store.finish(jid, "done")
        assert c.get(f"/api/jobs/{jid}/zip/frames").status_code == 404
        assert c.get(f"/api/jobs/{jid}/files/shot.1001.png").status_code == 404
        # A linked folder on the way is refused as well.
        (out / "shot.1001.png").unlink()
        os.rename(out, root / "jobs" / jid / "real")
        out.symlink_to(root / "jobs" / jid / "real")
        (root / "jobs" / jid / "real" / "shot.1001.png").write_bytes(b"\x89PNG\r\n\x1a\n")
        assert c.get(f"/api/jobs/{jid}/files/manifest.json").status_code == 404


def test_errors_carry_no_server_paths(tmp_path, plate):
    data, box = plate
    with _client(tmp_path, workers=1) as c:
        pid = c.post("/api/plates", content=data).json()["id"]
        (tmp_path / "plates" / pid / "plate.png").unlink()          # the render will not find it
        jid = c.post("/api/jobs", json={"plate": pid, "box": box}).json()["id"]
        t0 = time.time()
        while c.get(f"/api/jobs/{jid}").json()["state"] not in ("failed", "done") and time.time() - t0 < 60:
            time.sleep(0.2)
        j = c.get(f"/api/jobs/{jid}").json()
        assert j["state"] == "failed" and "plate.png" in j["error"], j
        assert str(tmp_path) not in j["error"] and "/plates/" not in j["error"], j["error"]


# ---- the event loop stays free while a big plate decodes -------------------------------------

def test_a_heavy_decode_does_not_stall_other_requests(tmp_path, monkeypatch):
    import httpx
    import uvicorn
    big = cv2.imencode(".png", np.random.default_rng(1).integers(0, 255, (3000, 3000, 3), np.uint8))[1].tobytes()
    entered, release = threading.Event(), threading.Event()
    real = web_app._ingest

    def slow_ingest(*a, **kw):          # the fault: the decode takes as long as the test wants
        entered.set()
        release.wait(60)
        return real(*a, **kw)
    monkeypatch.setattr(web_app, "_ingest", slow_ingest)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(tmp_path, workers=0)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    base = f"http://127.0.0.1:{port}"
    result = {}
    try:
        while not srv.started:
            time.sleep(0.05)

        def upload():
            with httpx.Client(base_url=base, headers={"Origin": base}, timeout=120) as c:
                result["r"] = c.post("/api/plates", content=big)
        up = threading.Thread(target=upload)
        up.start()
        assert entered.wait(60)
        with httpx.Client(base_url=base, timeout=10) as c:      # while the plate is decoding
            assert c.get("/api/fields").status_code == 200
            assert c.get("/api/jobs").status_code == 200
        release.set()
        up.join(120)
        assert result["r"].status_code == 200 and result["r"].json()["width"] == 3000
    finally:
        release.set()
        srv.should_exit = True
        th.join(10)
        app.state.runner.shutdown()


# ---- the page shows server text as text -------------------------------------------------------

def test_the_page_script_never_writes_html():
    js = (Path(web_app.__file__).parent / "static" / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
        assert sink not in js, sink


def test_server_text_is_shown_as_text_in_a_real_browser(tmp_path):
    pytest.importorskip("selenium", reason="selenium is not installed: make web")
    from tests.test_web import _chromium
    found = _chromium()
    if not found:
        pytest.skip("Debian's chromium and chromium-driver are not installed (make test installs them)")
    import uvicorn
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    app = create_app(tmp_path, workers=0)
    # A job as hostile as the store can hold: markup in its error, label and spec.
    store = app.state.store
    payload = '<img src=x onerror="window.__pwned=1">'
    jid = store.add("0" * 12, "preview", {"plate": "p.png", "name": payload}, label=payload)
    store.claim(set())
    store.finish(jid, "failed", payload)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    while not srv.started:
        time.sleep(0.05)
    opts = webdriver.ChromeOptions()
    opts.binary_location = found[0]
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(found[1]), options=opts)
    try:
        drv.get(f"http://127.0.0.1:{port}/")
        WebDriverWait(drv, 30).until(lambda d: payload in d.find_element(By.ID, "jobs").text)
        time.sleep(0.5)
        assert drv.execute_script("return window.__pwned") is None
        # The only pictures in the history are the page's own thumbnails, none from the markup.
        imgs = drv.find_elements(By.CSS_SELECTOR, "#jobs img")
        assert imgs and all(i.get_attribute("class") == "thumb" and "/thumb.jpg" in i.get_attribute("src")
                            for i in imgs)
    finally:
        drv.quit()
        srv.should_exit = True
        th.join(10)
        app.state.runner.shutdown()
