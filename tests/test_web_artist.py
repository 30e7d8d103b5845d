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
