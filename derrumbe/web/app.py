"""`derrumbe serve`: the whole tool in a browser on the artist's own machine.

A FastAPI app over the job queue (jobs.py) and upload checks (uploads.py); the page is
plain HTML/JS/CSS in static/ (no build step, no CDN: studios and this machine have no
network). Everything it writes lives under one work folder (~/.derrumbe-web by default):

    jobs.sqlite                 the queue
    plates/<id>/plate.<ext>     an upload, under a name the server made
    plates/<id>/shot/           the plate's shot folder: its stage cache is shared by its jobs
    jobs/<id>/out/              a finished job's files: the only files the server serves
"""


import asyncio
import base64
import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

from derrumbe.errors import DerrumbeError

# (No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations,
# and `Request` is imported inside create_app, where the web extra is known to exist.)

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
STATIC = Path(__file__).parent / "static"
_ID = re.compile(r"^[0-9a-f]{12}$")
# The spec fields the page offers, grouped as the page shows them.
PAGE_FIELDS = {
    "Collapse": ["style", "direction", "start", "height_m", "material", "pieces"],
    "Dust": ["dust", "wind", "dust_color"],
    "Shot": ["seed", "size", "fps", "duration", "shake", "grain"],
}
WEDGE_PARAMS = ("seed", "style", "direction", "dust", "pieces", "start", "material", "height_m")


def default_workers() -> int:
    # A render already uses both cores of a laptop; more jobs at once only thrash.
    return max(1, (os.cpu_count() or 2) // 4)


def require_web():
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise DerrumbeError(f"derrumbe serve needs the web extra ({e.name} is missing): "
                            f".venv/bin/pip install -e '.[web]' (or `make serve`)") from None


def create_app(root: Path, token: str | None = None, workers: int | None = None,
               max_bytes: int | None = None, max_pixels: int | None = None, max_seconds: float | None = None):
    require_web()
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
    from fastapi.staticfiles import StaticFiles

    from derrumbe.spec import ShotSpec, cli_fields
    from derrumbe.web import uploads
    from derrumbe.web.jobs import JobStore, Runner

    root = Path(root).expanduser().resolve()
    store = JobStore(root)
    runner = Runner(store, default_workers() if workers is None else workers)
    limits = dict(bytes=max_bytes or uploads.MAX_BYTES, pixels=max_pixels or uploads.MAX_PIXELS,
                  seconds=max_seconds or uploads.MAX_SECONDS)
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        yield
        runner.shutdown()       # running renders are killed; they are queued again at the next start

    app = FastAPI(title="derrumbe", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.runner, app.state.store, app.state.root = runner, store, root

    def bad(msg: str, code: int = 400):
        raise HTTPException(code, msg)

    @app.middleware("http")
    async def auth(request: Request, call_next):
        if token:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip() \
                or request.cookies.get("derrumbe_token") or request.query_params.get("token")
            if not given or not _same(given, token):
                return JSONResponse({"detail": "a token is required: open the address printed at start"}, 401)
        response = await call_next(request)
        if token and request.query_params.get("token"):
            response.set_cookie("derrumbe_token", token, httponly=True, samesite="strict")
        return response

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", response_class=HTMLResponse)
    def page():
        return (STATIC / "index.html").read_text()

    @app.get("/api/fields")
    def fields():
        out = {}
        table = {f.name: f for f in cli_fields()}
        for group, names in PAGE_FIELDS.items():
            out[group] = []
            for n in names:
                f = table[n]
                m = f.metadata
                out[group].append(dict(name=n, help=m["help"], unit=m["unit"], lo=m["lo"], hi=m["hi"],
                                       choices=m["choices"], default=f.default))
        return {"groups": out, "wedge_params": WEDGE_PARAMS}

    # ---- plates -----------------------------------------------------------------------
    @app.post("/api/plates")
    async def upload(request: Request):
        declared = int(request.headers.get("content-length") or 0)
        if declared > limits["bytes"]:
            bad(f"the upload is {declared / 1e6:.0f} MB; at most {limits['bytes'] / 1e6:.0f} MB", 413)
        pid = uuid.uuid4().hex[:12]
        pdir = root / "plates" / pid
        pdir.mkdir(parents=True)
        tmp = pdir / ".upload"
        size = 0
        try:
            with open(tmp, "wb") as f:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limits["bytes"]:
                        bad(f"the upload is over {limits['bytes'] / 1e6:.0f} MB", 413)
                    f.write(chunk)
            if size == 0:
                bad("the upload is empty")
            try:
                info = uploads.check(tmp, limits["pixels"], limits["seconds"])
            except DerrumbeError as e:
                bad(str(e), 415 if "not a plate" in str(e) else 400)
            plate = pdir / f"plate{info.ext}"
            os.replace(tmp, plate)
            # The picture the page draws on: the first frame, as the pipeline reads it.
            from derrumbe.stages.plate import open_plate
            import cv2
            try:
                src = open_plate(str(plate))
                first = src.frame(0).srgb
                src.close()
            except DerrumbeError as e:
                bad(str(e))
            ok, buf = cv2.imencode(".png", first[..., ::-1])
            (pdir / "first.png").write_bytes(buf.tobytes())
            meta = dict(id=pid, kind=info.kind, width=info.width, height=info.height, frames=info.frames,
                        fps=info.fps, seconds=info.seconds, file=plate.name)
            (pdir / "plate.json").write_text(json.dumps(meta))
            return meta
        except BaseException:
            shutil.rmtree(pdir, ignore_errors=True)
            raise

    def plate_meta(pid: str) -> dict:
        p = root / "plates" / pid / "plate.json" if _ID.match(pid or "") else None
        if p is None or not p.exists():
            bad("unknown plate", 404)
        return json.loads(p.read_text())

    @app.get("/api/plates/{pid}")
    def plate_info(pid: str):
        return plate_meta(pid)

    @app.get("/api/plates/{pid}/first.png")
    def plate_first(pid: str):
        plate_meta(pid)
        return FileResponse(root / "plates" / pid / "first.png", media_type="image/png")

    @app.post("/api/plates/{pid}/holdouts")
    async def plate_holdouts(pid: str, request: Request):
        """The automatic holdouts of the plate's first frame within a box, before any
        render: a matte (PNG, white = stays in front) the page paints into its holdout
        layer for the artist to erase or add to, and the detections as data."""
        meta = plate_meta(pid)
        body = await request.json()
        try:
            box = [int(round(float(v))) for v in body.get("box") or []]
            if len(box) != 4:
                raise ValueError
        except (TypeError, ValueError):
            bad("box must be four numbers x0, y0, x1, y1")
        try:
            return await asyncio.to_thread(_auto_holdouts, root / "plates" / pid / "first.png", box,
                                           (meta["width"], meta["height"]))
        except DerrumbeError as e:
            bad(str(e))

    # ---- jobs -------------------------------------------------------------------------
    def make_spec(body: dict) -> tuple[str, dict]:
        pid = str(body.get("plate", ""))
        meta = plate_meta(pid)
        pdir = root / "plates" / pid
        d = {k: v for k, v in (body.get("spec") or {}).items() if v not in (None, "")}
        unknown = set(d) - {f.name for f in cli_fields()}
        if unknown:
            bad(f"unknown field(s): {', '.join(sorted(unknown))}")
        d["plate"] = meta["file"]
        d["name"] = "shot"
        for k in ("box", "mask", "holdout"):
            d.pop(k, None)
        if body.get("box") is not None:
            from derrumbe.stages.matte import box_in_image
            try:
                d["box"] = [int(round(float(v))) for v in body["box"]]
                if len(d["box"]) == 4:
                    box_in_image(d["box"], (meta["width"], meta["height"]))
            except (TypeError, ValueError):
                bad("box must be four numbers x0, y0, x1, y1")
            except DerrumbeError as e:
                bad(str(e))
        for k in ("mask", "holdout"):
            if body.get(k):
                d[k] = _save_mask(pdir, body[k], (meta["width"], meta["height"]))
        d["preview"] = body.get("kind", "preview") == "preview"
        for k in ("exr", "usd", "prores", "burn_in"):
            if body.get(k) and not d["preview"]:
                d[k] = True
        try:
            ShotSpec.from_dict(d, pdir).validate()
        except DerrumbeError as e:
            bad(str(e))
        return pid, d

    @app.post("/api/jobs")
    async def new_job(request: Request):
        body = await _json(request)
        pid, spec = make_spec(body)
        jid = store.add(pid, "preview" if spec["preview"] else "final", spec)
        runner.wake.set()
        return store.get(jid)

    @app.get("/api/jobs")
    def jobs():
        return [_public(j) for j in store.list()]

    def job_or_404(jid: str) -> dict:
        j = store.get(jid) if _ID.match(jid or "") else None
        if j is None:
            bad("unknown job", 404)
        return j

    @app.get("/api/jobs/{jid}")
    def job(jid: str):
        return _public(job_or_404(jid))

    @app.post("/api/jobs/{jid}/cancel")
    def cancel(jid: str):
        job_or_404(jid)
        if not runner.cancel(jid):
            bad("the job has already finished", 409)
        return _public(store.get(jid))

    @app.post("/api/jobs/{jid}/promote")
    async def promote(jid: str, request: Request):
        j = job_or_404(jid)
        body = await _json(request)
        spec = dict(j["spec"])
        spec["preview"] = False
        for k in ("exr", "usd", "prores", "burn_in"):
            if body.get(k):
                spec[k] = True
        new = store.add(j["plate"], "final", spec, label=f"from {jid}")
        runner.wake.set()
        return store.get(new)

    @app.get("/api/jobs/{jid}/events")
    async def events(jid: str):
        job_or_404(jid)

        async def stream():
            last = None
            while True:
                j = _public(store.get(jid))
                msg = json.dumps(j)
                if msg != last:
                    yield f"data: {msg}\n\n"
                    last = msg
                if j["state"] in ("done", "failed", "cancelled"):
                    return
                await asyncio.sleep(0.4)
        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    def job_files(jid: str) -> tuple[Path, dict]:
        j = job_or_404(jid)
        if j["state"] != "done":
            bad("the job has not finished", 409)
        out = root / "jobs" / jid / "out"
        return out, json.loads((out / "manifest.json").read_text())

    @app.get("/api/jobs/{jid}/files/{rel:path}")
    def job_file(jid: str, rel: str):
        out, m = job_files(jid)
        # Only what the render wrote is served: a name from the manifest, nothing else.
        if rel != "manifest.json" and rel not in m.get("files", {}):
            bad("no such file in this job", 404)
        p = (out / rel).resolve()
        if not p.is_relative_to(out.resolve()) or not p.is_file():
            bad("no such file in this job", 404)
        return FileResponse(p, filename=f"{jid}_{Path(rel).name}")

    @app.get("/api/jobs/{jid}/zip/{what}")
    def job_zip(jid: str, what: str):
        import zipfile
        out, m = job_files(jid)
        pick = {"frames": lambda r: "/" not in r and r.endswith(".png"), "exr": lambda r: r.startswith("exr/"),
                "passes": lambda r: r.startswith("passes/")}.get(what)
        if pick is None:
            bad("zip of frames, exr or passes", 404)
        names = [r for r in m.get("files", {}) if pick(r)]
        if not names:
            bad(f"this job has no {what}", 404)
        tmp = tempfile.NamedTemporaryFile(suffix=".zip", delete=False, dir=root)
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
            for r in names:
                z.write(out / r, r)
        tmp.close()
        from starlette.background import BackgroundTask
        return FileResponse(tmp.name, filename=f"{jid}_{what}.zip", media_type="application/zip",
                            background=BackgroundTask(os.unlink, tmp.name))

    # ---- wedges: one parameter, a few values, a contact sheet of previews ----------------
    @app.post("/api/wedges")
    async def wedge(request: Request):
        body = await _json(request)
        param, values = body.get("param"), body.get("values") or []
        if param not in WEDGE_PARAMS:
            bad(f"a wedge varies one of {', '.join(WEDGE_PARAMS)}")
        if not 2 <= len(values) <= 12:
            bad("a wedge takes 2 to 12 values")
        wid = uuid.uuid4().hex[:12]
        specs = []
        for v in values:
            b = dict(body, kind="preview", spec={**(body.get("spec") or {}), param: v})
            specs.append(make_spec(b))          # all checked before any is queued
        ids = [store.add(pid, "preview", spec, wedge=wid, label=f"{param}={v}")
               for (pid, spec), v in zip(specs, values)]
        runner.wake.set()
        return {"wedge": wid, "param": param, "jobs": ids}

    @app.get("/api/wedges/{wid}")
    def wedge_state(wid: str):
        js = store.list(wedge=wid) if _ID.match(wid or "") else []
        if not js:
            bad("unknown wedge", 404)
        return {"wedge": wid, "jobs": [_public(j) for j in js]}

    @app.get("/api/wedges/{wid}/sheet.png")
    def wedge_sheet(wid: str):
        js = store.list(wedge=wid) if _ID.match(wid or "") else []
        if not js:
            bad("unknown wedge", 404)
        if any(j["state"] in ("queued", "running") for j in js):
            bad("the wedge is still rendering", 409)
        png = _contact_sheet(root, [j for j in js if j["state"] == "done"])
        return Response(png, media_type="image/png")

    return app


def _same(a: str, b: str) -> bool:
    import hmac
    return hmac.compare_digest(a.encode(), b.encode())


async def _json(request) -> dict:
    from fastapi import HTTPException
    try:
        body = await request.json()
    except ValueError:
        raise HTTPException(400, "the request body is not JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "the request body must be a JSON object")
    return body


def _save_mask(pdir: Path, data_url: str, size: tuple[int, int]) -> str:
    """A mask painted on the page (a PNG data URL) saved under its own hash."""
    from fastapi import HTTPException
    from derrumbe.web.uploads import png_size
    try:
        data = base64.b64decode(str(data_url).split(",", 1)[-1], validate=True)
        w, h = png_size(data)
    except (ValueError, DerrumbeError) as e:
        raise HTTPException(400, f"mask: {e}") from None
    if (w, h) != tuple(size):
        raise HTTPException(400, f"mask is {w}x{h}, the plate {size[0]}x{size[1]}")
    name = f"mask_{hashlib.sha256(data).hexdigest()[:16]}.png"
    (pdir / name).write_bytes(data)
    return name


def _public(j: dict) -> dict:
    """A job as the page sees it: no server paths."""
    return {k: j[k] for k in ("id", "created", "plate", "kind", "state", "progress", "error", "wedge", "label",
                              "started", "finished")} | {"spec": {k: v for k, v in j["spec"].items() if k != "plate"}}


def _contact_sheet(root: Path, jobs: list[dict]) -> bytes:
    import cv2
    import numpy as np
    tiles = []
    for j in jobs:
        out = root / "jobs" / j["id"] / "out"
        m = json.loads((out / "manifest.json").read_text())
        f = m["frames"][int(len(m["frames"]) * 0.6)]
        img = cv2.imread(str(out / f))
        img = cv2.resize(img, (480, int(480 * img.shape[0] / img.shape[1])))
        cv2.rectangle(img, (0, 0), (img.shape[1], 26), (20, 20, 20), -1)
        cv2.putText(img, j["label"] or j["id"], (8, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (235, 235, 235), 1,
                    cv2.LINE_AA)
        tiles.append(img)
    if not tiles:
        tiles = [np.zeros((270, 480, 3), np.uint8)]
    cols = min(3, len(tiles))
    h = max(t.shape[0] for t in tiles)
    tiles = [cv2.copyMakeBorder(t, 0, h - t.shape[0], 0, 0, cv2.BORDER_CONSTANT) for t in tiles]
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)]
    return cv2.imencode(".png", np.vstack(rows))[1].tobytes()


def serve(host: str, port: int, token: str | None, root: str, workers: int | None) -> int:
    require_web()
    import uvicorn
    token = token or os.environ.get("DERRUMBE_TOKEN") or None
    if host not in LOOPBACK and not token:
        raise DerrumbeError(f"binding to {host} exposes the page beyond this machine: give --token "
                            f"(or DERRUMBE_TOKEN) so only people with it can use it")
    app = create_app(Path(root), token, workers)
    where = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    print(f"derrumbe: serving {where}" + (f"?token={token}  (a token is required: {host} is not loopback)"
                                           if token else "") + f"  work folder {app.state.root}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0


def _auto_holdouts(first_png: Path, box, size) -> dict:
    """What the matte stage would hold out on this frame, as a PNG data URL and a list."""
    import cv2
    import numpy as np

    from derrumbe.stages.matte import compute_matte
    srgb = cv2.imread(str(first_png), cv2.IMREAD_COLOR)[..., ::-1]
    if (srgb.shape[1], srgb.shape[0]) != tuple(size):
        srgb = cv2.resize(srgb, tuple(size), interpolation=cv2.INTER_AREA)
    m = compute_matte(np.ascontiguousarray(srgb), box, None, None, 1)
    png = cv2.imencode(".png", (np.clip(m.holdout, 0, 1) * 255).astype(np.uint8))[1].tobytes()
    return {"matte": "data:image/png;base64," + base64.b64encode(png).decode(), "objects": m.objects.as_list()}
