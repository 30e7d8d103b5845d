"""The page as an artist uses it, in a real headless Chromium: the estimates and mattes
before a render, progress over the viewer while it renders, the player's frame numbers
and wipe, a finished shot reopened with its plate, box and settings after a reload and
after a server restart, and a bad value marked at its field. Each view is saved as a
screenshot in out/test-artifacts/ (looked at by whoever changes the page)."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed: make web")
pytest.importorskip("selenium", reason="selenium is not installed: make web")

from derrumbe.web.app import create_app  # noqa: E402
from tests.conftest import SHARED_PLATES  # noqa: E402
from tests.test_web import _chromium  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[1] / "out" / "test-artifacts"


class Server:
    """derrumbe serve on a free port, in this process (the queue and renders are real)."""

    def __init__(self, root: Path):
        import uvicorn
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.app = create_app(root, workers=1)
        self.srv = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.th = threading.Thread(target=self.srv.run, daemon=True)
        self.th.start()
        while not self.srv.started:
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}/"

    def stop(self):
        self.srv.should_exit = True
        self.th.join(10)
        self.app.state.runner.shutdown()


def _plate(demo_files) -> Path:
    if (SHARED_PLATES / "plates.json").exists():
        entry = json.loads((SHARED_PLATES / "plates.json").read_text())["plates"][1]     # img_140, small
        return SHARED_PLATES / entry["file"]
    d, _ = demo_files
    return d / "plate.png"


@pytest.fixture
def browser():
    found = _chromium()
    if not found:
        pytest.skip("Debian's chromium and chromium-driver are not installed (make test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = found[0]
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1500,950",
              "--autoplay-policy=no-user-gesture-required"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(found[1]), options=opts)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield drv
    drv.quit()


def _js(drv, script, *args):
    return drv.execute_script(script, *args)


def _set(drv, field_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    el = drv.find_element(By.ID, field_id)
    el.clear()
    el.send_keys(value)


def _open_plate_and_box(drv, url: str, plate: Path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    drv.get(url)
    wait = WebDriverWait(drv, 60)
    wait.until(lambda d: d.find_elements(By.ID, "f_duration"))
    fi = drv.find_element(By.ID, "file")
    _js(drv, "arguments[0].style.display = 'block'", fi)
    fi.send_keys(str(plate))
    canvas = wait.until(lambda d: d.find_element(By.ID, "canvas") if d.find_element(By.ID, "canvas").is_displayed()
                        and _js(d, "return document.getElementById('canvas').width > 0") else None)
    w, h = canvas.size["width"], canvas.size["height"]
    ActionChains(drv).move_to_element_with_offset(canvas, int(-w * 0.47), int(-h * 0.47)).click_and_hold() \
        .move_by_offset(int(w * 0.45), int(h * 0.4)).move_by_offset(int(w * 0.47), int(h * 0.35)) \
        .release().perform()
    return canvas


def test_estimates_progress_player_and_reopen_in_chromium(tmp_path, demo_files, browser):
    """One artist's session: box a plate, read the estimates, render, watch the progress
    over the viewer, scrub the result by frame number, wipe to the plate; reload the page
    and restart the server, and the finished shot comes back with its settings."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    drv = browser
    plate = _plate(demo_files)
    root = tmp_path / "root"
    srv = Server(root)
    try:
        _open_plate_and_box(drv, srv.url, plate)
        # Before any render: the matte, the holdouts and the estimates, as editable fields.
        WebDriverWait(drv, 120).until(lambda d: d.find_element(By.ID, "e_height_m").get_attribute("value"))
        est = _js(drv, "return state.est")
        assert est["height_m"] > 2 and est["distance_m"] > 1 and est["storeys"] > 0
        assert est["material"] in ("concrete", "masonry", "glass") and est["material_why"]
        for fid, unit in (("e_height_m", "m"), ("e_distance", "m"), ("e_focal_mm", "mm"), ("e_sun_azimuth", "°")):
            row = drv.find_element(By.ID, fid).find_element(By.XPATH, "../..")
            assert row.find_element(By.CSS_SELECTOR, ".unit").text == unit
        assert float(drv.find_element(By.ID, "e_height_m").get_attribute("value")) == pytest.approx(est["height_m"],
                                                                                                     abs=0.06)
        assert _js(drv, "return !!state.estImgs.matte && !!state.estImgs.holdouts")
        suggest = drv.find_element(By.CSS_SELECTOR, '[data-field="material"] .suggest').text
        assert est["material"] in suggest
        assert drv.find_element(By.ID, "f_material").get_attribute("value") == est["material"]
        # Storeys, height and distance are one number: editing the storeys moves the others.
        _set(drv, "e_storeys", "4")
        h4 = 4 * est["storey_m"] + est["ground_floor_m"] - est["storey_m"]
        assert float(drv.find_element(By.ID, "e_height_m").get_attribute("value")) == pytest.approx(h4, abs=0.06)
        assert float(drv.find_element(By.ID, "e_distance").get_attribute("value")) > 0
        drv.save_screenshot(str(ARTIFACTS / "web_estimates.png"))
        box = _js(drv, "return state.box")

        # Settings to find again later; a tiny final render.
        # (48 frames at 320 px: a few seconds, long enough to see the progress move.)
        for fid, v in (("f_seed", "7"), ("f_dust", "0"), ("f_pieces", "300"), ("f_size", "320"), ("f_fps", "12"),
                       ("f_duration", "4"), ("f_name", "tower"), ("f_version", "3")):
            _set(drv, fid, v)
        drv.find_element(By.ID, "render").click()
        # The progress element over the viewer updates while it renders.
        seen, fra, shot = [], set(), False
        t0 = time.time()
        while time.time() - t0 < 300:
            state = _js(drv, "return state.job && state.job.state")
            if _js(drv, "return !document.getElementById('hud').hidden"):
                v = int(drv.find_element(By.ID, "hud-progress").get_attribute("value"))
                if not seen or v != seen[-1]:
                    seen.append(v)
                f = drv.find_element(By.ID, "hud-fra").text
                if f.startswith("Fra "):
                    fra.add(f)
                    if not shot:
                        drv.save_screenshot(str(ARTIFACTS / "web_progress.png"))
                        shot = True
            if state in ("done", "failed", "cancelled"):
                break
            time.sleep(0.05)
        assert state == "done", _js(drv, "return state.job")
        assert len(seen) >= 2 and seen == sorted(seen), seen          # it moved, and only forward
        assert fra and all(int(f.split()[1]) >= 1001 for f in fra), fra
        assert drv.find_element(By.ID, "hud").get_attribute("hidden") is not None   # gone when done

        # The player counts frames from the shot's first frame, and wipes to the plate.
        WebDriverWait(drv, 60).until(lambda d: _js(d, "const v = document.getElementById('video'); "
                                                      "return v.src && v.readyState >= 2"))
        drv.find_element(By.ID, "t-first").click()
        assert drv.find_element(By.ID, "fra").text == "1001"
        drv.find_element(By.ID, "t-next").click()
        drv.find_element(By.ID, "t-next").click()
        WebDriverWait(drv, 10).until(lambda d: d.find_element(By.ID, "fra").text == "1003")
        assert "1001–1048" in drv.find_element(By.ID, "frange").text
        drv.find_element(By.ID, "t-wipe").click()
        assert drv.find_element(By.ID, "wipeimg").is_displayed()
        clip = _js(drv, "return document.getElementById('wipeimg').style.clipPath")
        assert clip.startswith("inset(")
        # At the last frame the wipe shows the plate against the fallen building.
        drv.find_element(By.ID, "t-last").click()
        WebDriverWait(drv, 10).until(lambda d: d.find_element(By.ID, "fra").text == "1048")
        names = [a.get_attribute("download") for a in drv.find_elements(By.CSS_SELECTOR, "#downloads a")]
        assert "tower_v003.mp4" in names and "tower_v003_frames.zip" in names
        drv.save_screenshot(str(ARTIFACTS / "web_player_wipe.png"))
        jid = _js(drv, "return state.job.id")

        def reopened():
            WebDriverWait(drv, 60).until(lambda d: _js(d, "return !!(state.job && state.manifest && "
                                                          "state.manifest.stem === 'tower_v003')"))
            assert _js(drv, "return state.box") == box
            for fid, v in (("f_seed", "7"), ("f_dust", "0"), ("f_pieces", "300"), ("f_size", "320"),
                           ("f_duration", "4"), ("f_name", "tower"), ("f_version", "3")):
                assert drv.find_element(By.ID, fid).get_attribute("value") == v, fid
            WebDriverWait(drv, 60).until(lambda d: d.find_element(By.ID, "e_height_m").get_attribute("value"))
            assert drv.find_element(By.ID, "e_height_m").get_attribute("value") == f"{round(h4, 1):g}"
            assert drv.find_element(By.ID, "player").is_displayed()

        # A reload: the shot comes back, settings and all.
        drv.refresh()
        reopened()
        assert drv.current_url.endswith(f"#job={jid}")
    finally:
        srv.stop()

    # A server restart: the history lists the shot with its thumbnail; a click reopens it.
    srv = Server(root)
    try:
        drv.get(srv.url)
        li = WebDriverWait(drv, 60).until(lambda d: d.find_element(By.ID, f"job_{jid}"))
        assert "tower_v003" in li.text and plate.name in li.text and "done" in li.text and "seed 7" in li.text
        WebDriverWait(drv, 30).until(lambda d: _js(
            d, "const i = document.querySelector(arguments[0]); return i.complete && i.naturalWidth > 0",
            f"#job_{jid} img.thumb"))
        li.click()
        reopened()
        drv.save_screenshot(str(ARTIFACTS / "web_history.png"))

        # A bad value: the field is marked, the message beside it, nothing queued.
        n_before = len(_js(drv, "return [...document.querySelectorAll('#jobs li.job')]"))
        drv.find_element(By.ID, "back").click()
        _set(drv, "f_wind", "strong")
        drv.find_element(By.ID, "preview").click()
        row = WebDriverWait(drv, 20).until(lambda d: d.find_element(By.CSS_SELECTOR, '.field.bad[data-field="wind"]'))
        msg = row.find_element(By.CSS_SELECTOR, ".err").text
        assert "2 numbers" in msg and not msg.startswith("--")
        assert len(_js(drv, "return [...document.querySelectorAll('#jobs li.job')]")) == n_before
        drv.save_screenshot(str(ARTIFACTS / "web_field_error.png"))
    finally:
        srv.stop()


# ---- the same, through the API -----------------------------------------------------------------

ORIGIN = "http://127.0.0.1:8000"
TINY_SPEC = {"size": 160, "duration": 1.0, "start": 0.2, "fps": 12, "pieces": 200, "dust": 0}


@pytest.fixture(scope="module")
def api(tmp_path_factory, demo_files):
    """A server with one finished final render of the demo plate, named and versioned."""
    import cv2
    from fastapi.testclient import TestClient
    from tests.test_web import _wait
    d, p = demo_files
    img = cv2.resize(p.srgb, (320, 180), interpolation=cv2.INTER_AREA)
    box = [int(round(v * 320 / p.srgb.shape[1])) for v in p.box]
    root = tmp_path_factory.mktemp("web_artist")
    with TestClient(create_app(root, workers=1), base_url=ORIGIN, headers={"Origin": ORIGIN}) as c:
        png = cv2.imencode(".png", img[..., ::-1])[1].tobytes()
        plate = c.post("/api/plates", content=png, headers={"X-Plate-Name": "Main%20Street%20%231.png"}).json()
        j = c.post("/api/jobs", json={"plate": plate["id"], "kind": "final", "box": box,
                                      "spec": {**TINY_SPEC, "version": 4}}).json()
        done = _wait(c, j["id"])
        assert done["state"] == "done", done
        yield c, root, plate, box, done


def test_the_estimates_are_the_renders_own(api):
    """The page's estimates of a plate and box equal what the render of it put in its manifest."""
    c, root, plate, box, job = api
    r = c.post(f"/api/plates/{plate['id']}/estimates", json={"box": box})
    assert r.status_code == 200, r.text
    est = r.json()["estimates"]
    m = c.get(f"/api/jobs/{job['id']}/files/manifest.json").json()
    e = m["estimates"]
    assert est["height_m"] == pytest.approx(e["height_m"], abs=0.051)
    assert est["distance_m"] == pytest.approx(e["distance_m"], abs=0.051)
    assert est["focal_mm"] == pytest.approx(e["focal_mm"], abs=0.051)
    assert est["horizon_y"] == pytest.approx(e["horizon_y"], abs=0.051)
    assert est["storeys"] == pytest.approx(e["floors"], abs=0.051)
    lo, hi = est["height_range_m"]
    assert lo < est["height_m"] < hi
    assert [o["id"] for o in est["holdouts"]] == [o["id"] for o in m["holdouts"]["objects"]]
    for k in ("matte", "holdouts"):
        assert r.json()[k].startswith("data:image/png;base64,")
    # Given values come back as given, and the range collapses onto them.
    r = c.post(f"/api/plates/{plate['id']}/estimates", json={"box": box, "spec": {"height_m": 40, "focal_mm": 50}})
    g = r.json()["estimates"]
    assert g["height_m"] == 40 and g["height_given"] and g["height_range_m"] == [40, 40] and g["focal_mm"] == 50
    assert g["distance_m"] == pytest.approx(est["distance_m"] * (40 / est["height_m"]) * (50 / est["focal_mm"]),
                                            rel=0.01)


def test_bad_values_name_their_field(api):
    c, root, plate, box, _ = api
    for spec, field in (({"wind": "strong"}, "wind"), ({"fps": 0}, "fps"), ({"dust_color": "1,2"}, "dust_color"),
                        ({"name": "../x"}, "name"), ({"style": "explode"}, "style")):
        r = c.post("/api/jobs", json={"plate": plate["id"], "box": box, "spec": spec})
        assert r.status_code == 400 and r.json()["field"] == field, (spec, r.text)
    r = c.post("/api/jobs", json={"plate": plate["id"], "box": [0, 0, 900, 100]})
    assert r.status_code == 400 and r.json()["field"] == "box" and "outside" in r.json()["detail"]
    r = c.post(f"/api/plates/{plate['id']}/estimates", json={"box": [0, 0, 900, 100]})
    assert r.status_code == 400 and r.json()["field"] == "box"
    r = c.post(f"/api/plates/{plate['id']}/estimates", json={"box": box, "spec": {"height_m": "inf"}})
    assert r.status_code == 400 and r.json()["field"] == "height_m"


def test_downloads_are_named_after_the_shot_and_version(api):
    c, root, plate, box, job = api
    jid = job["id"]
    m = c.get(f"/api/jobs/{jid}/files/manifest.json")
    stem = "Main_Street_1_v004"          # the plate's file name, made a shot name
    assert f'filename="{stem}.manifest.json"' in m.headers["content-disposition"]
    mv = c.get(f"/api/jobs/{jid}/files/{stem}.mp4")
    assert mv.status_code == 200 and f'filename="{stem}.mp4"' in mv.headers["content-disposition"]
    z = c.get(f"/api/jobs/{jid}/zip/frames")
    assert f'filename="{stem}_frames.zip"' in z.headers["content-disposition"]


def test_history_lists_plate_name_thumbnails_and_inputs(api):
    import cv2
    import numpy as np
    c, root, plate, box, job = api
    assert plate["name"] == "Main Street #1.png"
    listed = next(j for j in c.get("/api/jobs").json() if j["id"] == job["id"])
    assert listed["plate_name"] == "Main Street #1.png" and listed["spec"]["box"] == box
    assert listed["spec"]["version"] == 4 and listed["created"] and listed["finished"] >= listed["started"]
    t = c.get(f"/api/jobs/{job['id']}/thumb.jpg")
    assert t.status_code == 200 and t.headers["content-type"] == "image/jpeg"
    thumb = cv2.imdecode(np.frombuffer(t.content, np.uint8), cv2.IMREAD_COLOR)
    m = c.get(f"/api/jobs/{job['id']}/files/manifest.json").json()
    frame = cv2.imread(str(root / "jobs" / job["id"] / "out" / m["frames"][int(len(m["frames"]) * 0.6)]))
    small = cv2.resize(frame, (thumb.shape[1], thumb.shape[0]), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(int) - thumb).mean() < 6           # a picture of the shot, not a placeholder
    assert c.get(f"/api/jobs/{job['id']}/inputs/mask").status_code == 404       # boxed, not painted
    # A painted building comes back as the mask it was stored as.
    mask = np.zeros((180, 320), np.uint8)
    mask[20:150, 60:260] = 255
    url = "data:image/png;base64," + __import__("base64").b64encode(cv2.imencode(".png", mask)[1].tobytes()).decode()
    j = c.post("/api/jobs", json={"plate": plate["id"], "mask": url, "spec": TINY_SPEC}).json()
    c.post(f"/api/jobs/{j['id']}/cancel")
    back = c.get(f"/api/jobs/{j['id']}/inputs/mask")
    assert back.status_code == 200
    assert np.array_equal(cv2.imdecode(np.frombuffer(back.content, np.uint8), cv2.IMREAD_GRAYSCALE), mask)
    assert c.get(f"/api/jobs/{j['id']}/inputs/..%2Fplate.json").status_code == 404


def test_an_uploaded_name_is_shown_never_used(tmp_path):
    from derrumbe.web.app import _plate_name, _shot_name
    assert _plate_name("..%2F..%2Fetc%2Fpasswd%0A") == "passwd"
    assert _plate_name("C%3A%5Cplates%5Cbig.exr") == "big.exr"
    assert len(_plate_name("a" * 5000)) == 120
    assert _shot_name("Main Street #1.png") == "Main_Street_1" and _shot_name("") == "shot"
    assert _shot_name("???.png") == "shot"


def test_the_new_endpoints_keep_the_guards(api):
    from fastapi.testclient import TestClient
    c, root, plate, box, job = api
    bare = TestClient(c.app, base_url=ORIGIN)               # no Origin: a script or another site
    assert bare.post(f"/api/plates/{plate['id']}/estimates", json={"box": box}).status_code == 403
    evil = TestClient(c.app, base_url="http://evil.example:8000", headers={"Origin": "http://evil.example:8000"})
    for path in (f"/api/jobs/{job['id']}/thumb.jpg", f"/api/jobs/{job['id']}/inputs/mask"):
        assert evil.get(path).status_code == 421
    r = c.post(f"/api/plates/{plate['id']}/estimates", content=b"box=1", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    r = c.post(f"/api/plates/{plate['id']}/holdouts", content=b"{}", headers={"content-type": "text/plain"})
    assert r.status_code == 415


def test_find_holdouts_answers(api):
    """The page's Edit holdouts button: the automatic holdouts as a matte (it answered 500
    before: base64 was used without being imported)."""
    c, root, plate, box, _ = api
    r = c.post(f"/api/plates/{plate['id']}/holdouts", json={"box": box})
    assert r.status_code == 200 and r.json()["matte"].startswith("data:image/png;base64,")
