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
import socket
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from derrumbe.errors import DerrumbeError

# (No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations,
# and `Request` is imported inside create_app, where the web extra is known to exist.)

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
STATIC = Path(__file__).parent / "static"
_ID = re.compile(r"^[0-9a-f]{12}$")
# The spec fields the page offers, grouped as the page shows them. "Camera and scale"
# holds the estimates: the page fills them in from /estimates once a box is drawn.
PAGE_FIELDS = {
    "Camera and scale": ["height_m", "focal_mm", "horizon_y", "sun_azimuth", "sun_elevation"],
    "Collapse": ["style", "direction", "start", "material", "pieces", "seed"],
    "Dust": ["dust", "wind", "dust_color", "see_through"],
    "Look": ["shutter", "shake", "grain"],
    "Output": ["name", "version", "size", "fps", "duration", "frames"],
}
# What the page calls each field, and what an empty field means.
LABELS = {"height_m": "Height", "focal_mm": "Lens", "horizon_y": "Horizon", "sun_azimuth": "Sun azimuth",
          "sun_elevation": "Sun elevation", "style": "Style", "direction": "Falls", "start": "Starts at",
          "material": "Material", "pieces": "Pieces", "seed": "Seed", "dust": "Dust amount", "wind": "Wind",
          "dust_color": "Dust colour", "see_through": "See-through", "shutter": "Shutter", "shake": "Camera shake", "grain": "Grain", "name": "Shot name",
          "version": "Version", "size": "Size", "fps": "Frame rate", "duration": "Length", "frames": "Frames"}
PLACEHOLDERS = {"height_m": "estimated", "focal_mm": "26", "horizon_y": "estimated", "sun_azimuth": "estimated",
                "sun_elevation": "40", "wind": "1,90 (SPEED,HEADING)", "dust_color": "196,190,178 (R,G,B)",
                "size": "plate size (W or WxH)", "fps": "24, or the video's", "duration": "6, or the video's",
                "name": "from the plate's file name", "frames": "1001-1144 (or a Length)"}
UNITS = {"shutter": "°", "wind": "m/s, °", "dust_color": "sRGB", "size": "px", "sun_azimuth": "°", "sun_elevation": "°",
         "horizon_y": "px", "fps": "fps"}
ESTIMATE_FIELDS = ("height_m", "focal_mm", "horizon_y", "sun_azimuth", "sun_elevation")
WEDGE_PARAMS = ("seed", "style", "direction", "dust", "pieces", "start", "material", "height_m")
_MASK_NAME = re.compile(r"^mask_[0-9a-f]{16}\.png$")
# Limits of the server (README: "Limits"); the plate's own are in stages/plate.py.
MAX_JSON_BYTES = 20_000_000     # a job's JSON: two painted masks as PNG data URLs at most
MAX_PLATES = 500                # plates stored in the work folder
MAX_PENDING_JOBS = 50           # jobs queued or running at once
MAX_JOBS = 5000                 # jobs kept in the work folder
LIST_JOBS = 200                 # the newest jobs GET /api/jobs returns
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# The page loads nothing but its own files; nothing may frame it.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                               "media-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
                               "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


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


def allowed_hosts(host: str, extra=()) -> set[str]:
    """Host names the page answers to: loopback, the address it is bound to, this
    machine's name and what --allowed-host adds. Any other Host header is refused,
    which is what stops DNS rebinding (a hostile name pointed at 127.0.0.1)."""
    names = set(LOOPBACK) | {h.lower().strip("[]") for h in extra if h}
    if host not in ("0.0.0.0", "::", ""):
        names.add(host.lower().strip("[]"))
    try:
        names.add(socket.gethostname().lower())
    except OSError:
        pass
    return names


def _host_name(header: str) -> str | None:
    """The name in a Host header (no port); None when it is malformed."""
    try:
        u = urlsplit("//" + header)
        name = u.hostname
        u.port                  # raises on a bad port
    except ValueError:
        return None
    return name


def create_app(root: Path, token: str | None = None, workers: int | None = None,
               max_bytes: int | None = None, max_pixels: int | None = None, max_seconds: float | None = None,
               host: str = "127.0.0.1", extra_hosts=(), render_command=None, max_plates: int = MAX_PLATES,
               max_pending: int = MAX_PENDING_JOBS, max_jobs: int = MAX_JOBS):
    require_web()
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
    from fastapi.staticfiles import StaticFiles

    from derrumbe.spec import ShotSpec, check_field, cli_fields
    from derrumbe.web import uploads
    from derrumbe.web.jobs import JobStore, Runner

    root = Path(root).expanduser().resolve()
    store = JobStore(root)
    runner = Runner(store, default_workers() if workers is None else workers, command=render_command)
    limits = dict(bytes=max_bytes or uploads.MAX_BYTES, pixels=max_pixels or uploads.MAX_PIXELS,
                  seconds=max_seconds or uploads.MAX_SECONDS)
    hosts = allowed_hosts(host, extra_hosts)
    decoding = asyncio.Semaphore(1)         # one plate decoded at a time: memory stays bounded
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        yield
        runner.shutdown()       # running renders are stopped; they are queued again at the next start

    app = FastAPI(title="derrumbe", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.runner, app.state.store, app.state.root = runner, store, root

    def bad(msg: str, code: int = 400):
        raise HTTPException(code, " ".join(str(msg).split())[:500])

    class FieldProblem(Exception):
        """A bad value of one field: the page marks that field and puts the message beside it."""
        def __init__(self, message: str, field: str):
            super().__init__(message)
            self.message, self.field = " ".join(str(message).split())[:500], field

    @app.exception_handler(FieldProblem)
    async def field_problem(request, exc: FieldProblem):
        return JSONResponse({"detail": exc.message, "field": exc.field}, 400)

    def bad_input(e: DerrumbeError):
        if getattr(e, "field", None):
            raise FieldProblem(str(e), e.field)
        bad(str(e))

    def refuse(msg: str, code: int):
        return JSONResponse({"detail": msg}, code, headers=SECURITY_HEADERS)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        name = _host_name(request.headers.get("host", ""))
        if name is None or name.lower() not in hosts:
            return refuse("unknown host: reach the page by the address printed at start (or add --allowed-host)",
                          421)
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        bearer_ok = bool(token and bearer and _same(bearer, token))
        if token and not bearer_ok:
            given = request.cookies.get("derrumbe_token") or request.query_params.get("token")
            if not given or not _same(given, token):
                return refuse("a token is required: open the address printed at start", 401)
        if request.method in UNSAFE_METHODS and not bearer_ok and not _same_origin(request):
            # A form or fetch from another site cannot set this header to our origin.
            return refuse("refused: a request that changes something must come from this page "
                          "(same-origin Origin header) or carry the token (Authorization: Bearer)", 403)
        response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
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
                out[group].append(dict(name=n, label=LABELS.get(n, n), help=m["help"],
                                       unit=UNITS.get(n, m["unit"]), lo=m["lo"], hi=m["hi"], choices=m["choices"],
                                       default=f.default, placeholder=PLACEHOLDERS.get(n)))
        return {"groups": out, "wedge_params": [dict(name=n, label=LABELS.get(n, n), unit=UNITS.get(
            n, table[n].metadata["unit"])) for n in WEDGE_PARAMS]}

    # ---- plates -----------------------------------------------------------------------
    @app.post("/api/plates")
    async def upload(request: Request):
        try:
            declared = int(request.headers.get("content-length") or 0)
        except ValueError:
            bad("bad Content-Length")
        if declared > limits["bytes"]:
            bad(f"the upload is {declared / 1e6:.0f} MB; at most {limits['bytes'] / 1e6:.0f} MB", 413)
        plates = root / "plates"
        if plates.is_dir() and sum(1 for _ in plates.iterdir()) >= max_plates:
            bad(f"the work folder holds {max_plates} plates, the most it keeps; start a new --root "
                f"or remove old plates from it", 507)
        pid = uuid.uuid4().hex[:12]
        shown = _plate_name(request.headers.get("x-plate-name", ""))
        pdir = plates / pid
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
            # Decoding is heavy: off the event loop, one at a time, so the page stays live.
            async with decoding:
                return await asyncio.to_thread(_ingest, pid, pdir, tmp, limits, bad, shown)
        except BaseException:
            shutil.rmtree(pdir, ignore_errors=True)
            raise

    def plate_meta(pid) -> dict:
        if not isinstance(pid, str) or not _ID.match(pid):
            bad("unknown plate", 404)
        p = _inside(root, f"plates/{pid}/plate.json")
        if p is None:
            bad("unknown plate", 404)
        return json.loads(p.read_text())

    @app.get("/api/plates/{pid}")
    def plate_info(pid: str):
        return plate_meta(pid)

    @app.get("/api/plates/{pid}/first.png")
    def plate_first(pid: str):
        plate_meta(pid)
        p = _inside(root, f"plates/{pid}/first.png")
        if p is None:
            bad("no such file", 404)
        return FileResponse(p, media_type="image/png")

    @app.post("/api/plates/{pid}/holdouts")
    async def plate_holdouts(pid: str, request: Request):
        """The automatic holdouts of the plate's first frame within a box, before any
        render: a matte (PNG, white = stays in front) the page paints into its holdout
        layer for the artist to erase or add to, and the detections as data."""
        meta = plate_meta(pid)
        body = await _json(request)
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
        """A job's spec from the page's request, every field checked (spec.check_field,
        as on the command line); the plate and masks are the server's own files."""
        meta = plate_meta(body.get("plate"))
        pid = meta["id"]
        pdir = root / "plates" / pid
        spec = body.get("spec") or {}
        if not isinstance(spec, dict):
            bad("spec must be an object of fields")
        d = {str(k): v for k, v in spec.items() if v not in (None, "")}
        unknown = set(d) - {f.name for f in cli_fields()} | ({"box", "mask", "holdout"} & set(d))
        if unknown:
            bad(f"unknown field(s): {', '.join(sorted(unknown))[:200]}")
        kind = body.get("kind", "preview")
        if kind not in ("preview", "final"):
            bad("kind must be preview or final")
        d.setdefault("name", _shot_name(meta.get("name")))
        d.update(plate=meta["file"], preview=kind == "preview")
        size = (meta["width"], meta["height"])
        try:
            if body.get("box") is not None:
                from derrumbe.stages.matte import check_box
                d["box"], _ = check_box(check_field("box", body["box"]), size)
            for k in ("mask", "holdout"):
                if body.get(k):
                    d[k] = _save_mask(pdir, body[k], size)
            for k in ("exr", "usd", "prores", "burn_in"):
                if body.get(k) is True and kind == "final":
                    d[k] = True
            checked = ShotSpec.from_dict(d).validate()
        except DerrumbeError as e:
            bad_input(e)
        return pid, checked.to_dict()

    def room_for(n: int) -> None:
        if store.count(("queued", "running")) + n > max_pending:
            bad(f"{max_pending} jobs are waiting or rendering, the most the queue takes; wait or cancel some", 429)
        if store.count() + n > max_jobs:
            bad(f"the work folder holds {max_jobs} jobs, the most it keeps; start a new --root", 507)

    @app.post("/api/jobs")
    async def new_job(request: Request):
        body = await _json(request)
        pid, spec = await asyncio.to_thread(make_spec, body)
        room_for(1)
        jid = store.add(pid, "preview" if spec["preview"] else "final", spec)
        runner.wake.set()
        return _public(store.get(jid))

    def plate_name(pid: str, seen: dict) -> str | None:
        if pid not in seen:
            p = _inside(root, f"plates/{pid}/plate.json") if _ID.match(pid or "") else None
            try:
                seen[pid] = json.loads(p.read_text()).get("name") if p else None
            except ValueError:
                seen[pid] = None
        return seen[pid]

    @app.get("/api/jobs")
    def jobs():
        seen: dict = {}
        return [_public(j, plate_name(j["plate"], seen)) for j in store.list(limit=LIST_JOBS)]

    def job_or_404(jid: str) -> dict:
        j = store.get(jid) if _ID.match(jid or "") else None
        if j is None:
            bad("unknown job", 404)
        return j

    @app.get("/api/jobs/{jid}")
    def job(jid: str):
        j = job_or_404(jid)
        return _public(j, plate_name(j["plate"], {}))

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
        if j["state"] != "done":
            bad(f"only a finished job can be rendered final; this one is {j['state']}", 409)
        spec = dict(j["spec"])
        spec["preview"] = False
        for k in ("exr", "usd", "prores", "burn_in"):
            if body.get(k) is True:
                spec[k] = True
        room_for(1)
        new = store.add(j["plate"], "final", spec, label=f"from {jid}")
        runner.wake.set()
        return _public(store.get(new))

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

    def job_files(jid: str) -> tuple[str, dict]:
        j = job_or_404(jid)
        if j["state"] != "done":
            bad("the job has not finished", 409)
        base = f"jobs/{jid}/out"
        p = _inside(root, f"{base}/manifest.json")
        m = json.loads(p.read_text()) if p else None
        if not isinstance(m, dict) or not isinstance(m.get("files", {}), dict):
            bad("this job's files are missing", 404)
        return base, m

    @app.get("/api/jobs/{jid}/files/{rel:path}")
    def job_file(jid: str, rel: str):
        base, m = job_files(jid)
        # Only what the render wrote is served: a name from the manifest, nothing else,
        # and never through a symbolic link.
        if rel != "manifest.json" and rel not in m.get("files", {}):
            bad("no such file in this job", 404)
        p = _inside(root, f"{base}/{rel}")
        if p is None:
            bad("no such file in this job", 404)
        name = f"{m.get('stem', 'shot')}.manifest.json" if rel == "manifest.json" else Path(rel).name
        return FileResponse(p, filename=name)

    @app.get("/api/jobs/{jid}/zip/{what}")
    def job_zip(jid: str, what: str):
        import zipfile
        base, m = job_files(jid)
        pick = {"frames": lambda r: "/" not in r and r.endswith(".png"), "exr": lambda r: r.startswith("exr/"),
                "passes": lambda r: r.startswith("passes/")}.get(what)
        if pick is None:
            bad("zip of frames, exr or passes", 404)
        names = [r for r in m.get("files", {}) if isinstance(r, str) and pick(r)]
        paths = [(_inside(root, f"{base}/{r}"), r) for r in names]
        if not paths or any(p is None for p, _ in paths):
            bad(f"this job has no {what}" if not paths else "a file of this job is missing", 404)
        fd, tmp = tempfile.mkstemp(suffix=".zip", prefix=".zip-", dir=root)
        try:
            with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
                for p, r in paths:
                    z.write(p, r)
        except BaseException:
            os.unlink(tmp)
            raise
        from starlette.background import BackgroundTask
        return FileResponse(tmp, filename=f"{m.get('stem', 'shot')}_{what}.zip", media_type="application/zip",
                            background=BackgroundTask(os.unlink, tmp))

    # ---- before a render: the matte, the holdouts and the estimates ----------------------
    analysing = asyncio.Semaphore(1)        # one matte at a time: GrabCut is heavy

    @app.post("/api/plates/{pid}/estimates")
    async def plate_estimates(pid: str, request: Request):
        """What the render will assume about this plate and box (or painted building): the
        building matte and the automatic holdouts as PNG data URLs, and the estimates
        (storeys, height and its range, distance, lens, horizon, sun, material), the same
        functions the pipeline runs. Kept per plate and input, so a reopened shot is instant."""
        meta = plate_meta(pid)
        body = await _json(request)
        size = (meta["width"], meta["height"])
        given = body.get("spec") or {}
        if not isinstance(given, dict):
            bad("spec must be an object of fields")
        try:
            d = {k: check_field(k, given[k]) for k in ESTIMATE_FIELDS if given.get(k) not in (None, "")}
            seed = check_field("seed", given.get("seed", 1)) or 1
            mask = _decode_mask(body["mask"], size) if body.get("mask") else None
            box = None
            if mask is None:
                from derrumbe.stages.matte import check_box
                if body.get("box") is None:
                    raise DerrumbeError("draw a box around the building (or paint it) first", field="box")
                box, _ = check_box(check_field("box", body["box"]), size)
        except DerrumbeError as e:
            bad_input(e)
        auto = body.get("auto_holdouts", True) is not False
        key = hashlib.sha256(json.dumps([box, d, seed, auto, None if mask is None else
                                         hashlib.sha256(mask.tobytes()).hexdigest()]).encode()).hexdigest()[:16]
        cached = _inside(root, f"plates/{pid}/estimates_{key}.json")
        if cached is not None:
            return json.loads(cached.read_text())
        async with analysing:
            try:
                out = await asyncio.to_thread(_estimates, root / "plates" / pid, size, box, mask, d, seed, auto)
            except DerrumbeError as e:
                bad_input(e)
        from derrumbe.files import atomic_write_bytes
        atomic_write_bytes(root / "plates" / pid / f"estimates_{key}.json", json.dumps(out).encode())
        return out

    # ---- history: thumbnails and the inputs a job was made with -------------------------
    @app.get("/api/jobs/{jid}/thumb.jpg")
    def job_thumb(jid: str):
        """A small picture of the job: a frame of its shot once done, else its plate."""
        j = job_or_404(jid)
        if j["state"] == "done":
            p = _inside(root, f"jobs/{jid}/thumb.jpg") or _job_thumb(root, j)
        else:
            p = _inside(root, f"plates/{j['plate']}/thumb.jpg") or _plate_thumb(root, j["plate"])
        if p is None:
            bad("no picture of this job", 404)
        return FileResponse(p, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})

    @app.get("/api/jobs/{jid}/inputs/{which}")
    def job_input(jid: str, which: str):
        """The building or holdout mask a job was sent with (a PNG of the plate's size)."""
        j = job_or_404(jid)
        if which not in ("mask", "holdout"):
            bad("mask or holdout", 404)
        name = j["spec"].get(which)
        p = _inside(root, f"plates/{j['plate']}/{name}") if isinstance(name, str) and _MASK_NAME.match(name) \
            else None
        if p is None:
            bad(f"this job has no {which}", 404)
        return FileResponse(p, media_type="image/png")

    # ---- wedges: one parameter, a few values, a contact sheet of previews ----------------
    @app.post("/api/wedges")
    async def wedge(request: Request):
        body = await _json(request)
        param, values = body.get("param"), body.get("values")
        if not isinstance(param, str) or param not in WEDGE_PARAMS:
            bad(f"a wedge varies one of {', '.join(WEDGE_PARAMS)}")
        if not isinstance(values, list) or not 2 <= len(values) <= 12:
            bad("a wedge takes a list of 2 to 12 values")
        if not isinstance(body.get("spec") or {}, dict):
            bad("spec must be an object of fields")

        def specs():                        # all checked before any is queued
            return [make_spec(dict(body, kind="preview", spec={**(body.get("spec") or {}), param: v}))
                    for v in values]
        checked = await asyncio.to_thread(specs)
        room_for(len(checked))
        wid = uuid.uuid4().hex[:12]
        ids = [store.add(pid, "preview", spec, wedge=wid, label=f"{param}={spec.get(param)}")
               for pid, spec in checked]
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


def _ingest(pid: str, pdir: Path, tmp: Path, limits: dict, bad, shown: str = "") -> dict:
    """An upload checked by its header, renamed to the plate's name, decoded (a video's
    frames counted) and its first frame kept for the page. Runs on a worker thread."""
    import cv2
    from derrumbe.files import atomic_write_bytes
    from derrumbe.stages.plate import open_plate
    from derrumbe.web import uploads
    try:
        info = uploads.check(tmp, limits["pixels"])
    except DerrumbeError as e:
        bad(str(e), 415 if "not a plate" in str(e) else 400)
    plate = pdir / f"plate{info.ext}"
    os.replace(tmp, plate)
    try:
        src = open_plate(str(plate), max_seconds=limits["seconds"])
        try:
            first = src.frame(0).srgb
            frames, rate = src.n_frames, src.rate
        finally:
            src.close()
    except DerrumbeError as e:
        bad(str(e).replace(str(plate), plate.name))
    # The size the pipeline works at: the decoded one (EXIF orientation applied).
    h, w = first.shape[:2]
    atomic_write_bytes(pdir / "first.png", cv2.imencode(".png", first[..., ::-1])[1].tobytes())
    fps = float(rate) if rate else None
    meta = dict(id=pid, kind=info.kind, width=int(w), height=int(h), frames=int(frames), fps=fps,
                seconds=frames / fps if fps else None, file=plate.name, name=shown)
    atomic_write_bytes(pdir / "plate.json", json.dumps(meta).encode())
    return meta


def _inside(root: Path, rel: str) -> Path | None:
    """root/rel if it is a regular file reached without a symbolic link or '..' on the
    way, else None: a link planted in the work folder leads nowhere."""
    p = root
    for part in rel.split("/"):
        if part in ("", ".", "..") or "\0" in part:
            return None
        p = p / part
        if p.is_symlink():
            return None
    return p if p.is_file() else None


def _same(a: str, b: str) -> bool:
    import hmac
    return hmac.compare_digest(a.encode(), b.encode())


def _same_origin(request) -> bool:
    origin = request.headers.get("origin")
    if not origin or request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    return origin.lower() == f"{request.url.scheme}://{request.headers.get('host', '')}".lower()


async def _json(request) -> dict:
    """The request's JSON object: sent as application/json (a cross-site form cannot
    send that without a preflight), at most MAX_JSON_BYTES."""
    from fastapi import HTTPException
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise HTTPException(415, "send the request body as application/json")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_JSON_BYTES:
            raise HTTPException(413, f"the request is over {MAX_JSON_BYTES / 1e6:.0f} MB")
    try:
        body = json.loads(bytes(data), parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise HTTPException(400, "the request body is not JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "the request body must be a JSON object")
    return body


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")         # Infinity, -Infinity, NaN


def _decode_mask(data_url, size: tuple[int, int]):
    """A mask painted on the page (a PNG data URL) as one 8-bit channel of the plate's size."""
    import base64
    import binascii
    from derrumbe.web.uploads import MAX_MASK_BYTES, read_mask_png
    if not isinstance(data_url, str) or len(data_url) > MAX_MASK_BYTES * 4 // 3 + 100:
        raise DerrumbeError(f"a mask is a PNG data URL of at most {MAX_MASK_BYTES / 1e6:.0f} MB")
    try:
        data = base64.b64decode(data_url.split(",", 1)[-1], validate=True)
    except (ValueError, binascii.Error):
        raise DerrumbeError("a mask must be a base64 PNG data URL") from None
    return read_mask_png(data, size)


def _save_mask(pdir: Path, data_url, size: tuple[int, int]) -> str:
    """A painted mask, decoded and stored as a clean 8-bit PNG under its own hash."""
    import cv2
    from derrumbe.files import atomic_write_bytes
    mask = _decode_mask(data_url, size)
    png = cv2.imencode(".png", mask)[1].tobytes()
    name = f"mask_{hashlib.sha256(png).hexdigest()[:16]}.png"
    atomic_write_bytes(pdir / name, png)
    return name


def _public(j: dict, plate_name: str | None = None) -> dict:
    """A job as the page sees it: no server paths (the plate by the name it was uploaded as)."""
    return {k: j[k] for k in ("id", "created", "plate", "kind", "state", "progress", "error", "wedge", "label",
                              "started", "finished")} | {"spec": {k: v for k, v in j["spec"].items() if k != "plate"},
                                                         "plate_name": plate_name}


def _plate_name(header: str) -> str:
    """The file name the artist's plate had (sent URL-encoded by the page): shown, never used as a path."""
    from urllib.parse import unquote
    name = unquote(header[:1000]).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable())
    return name[:120]


def _shot_name(plate_name: str | None) -> str:
    """A shot name (letters, digits, _ . -) from the plate's file name, else 'shot'."""
    stem = Path(plate_name or "").stem
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_.-")[:40]
    return name if name and name[0].isalnum() else "shot"


def _thumb(src: Path, dest: Path, width: int = 320) -> Path | None:
    import cv2
    from derrumbe.files import atomic_write_bytes
    img = cv2.imread(str(src), cv2.IMREAD_COLOR)
    if img is None:
        return None
    img = cv2.resize(img, (width, max(1, int(round(width * img.shape[0] / img.shape[1])))),
                     interpolation=cv2.INTER_AREA)
    atomic_write_bytes(dest, cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
    return dest


def _job_thumb(root: Path, j: dict) -> Path | None:
    """A frame from 60 % into the shot: the collapse under way."""
    mp = _inside(root, f"jobs/{j['id']}/out/manifest.json")
    frames = (json.loads(mp.read_text()).get("frames") if mp else None) or []
    f = _inside(root, f"jobs/{j['id']}/out/{frames[int(len(frames) * 0.6)]}") if frames else None
    return _thumb(f, root / "jobs" / j["id"] / "thumb.jpg") if f else None


def _plate_thumb(root: Path, pid: str) -> Path | None:
    f = _inside(root, f"plates/{pid}/first.png") if _ID.match(pid or "") else None
    return _thumb(f, root / "plates" / pid / "thumb.jpg") if f else None


def _estimates(pdir: Path, size, box, mask, given: dict, seed: int, auto: bool) -> dict:
    """The matte, the holdouts and the estimates of a plate's first frame (a worker thread)."""
    import base64
    import cv2
    import numpy as np
    from derrumbe import colour, estimates
    from derrumbe.spec import ShotSpec
    from derrumbe.stages.matte import compute_matte
    srgb = cv2.imread(str(pdir / "first.png"), cv2.IMREAD_COLOR)[..., ::-1]
    if (srgb.shape[1], srgb.shape[0]) != tuple(size):
        srgb = cv2.resize(srgb, tuple(size), interpolation=cv2.INTER_AREA)
    srgb = np.ascontiguousarray(srgb)
    from derrumbe.stages.camera import stop_at_the_foot, too_tall_by_the_facade
    m = compute_matte(srgb, box, None if mask is None else (mask > 127).astype(np.float32), None, seed,
                      auto_holdouts=auto, judge=too_tall_by_the_facade(srgb), foot=stop_at_the_foot)
    est = estimates.estimate(srgb, colour.u8_to_linear(srgb), m, ShotSpec(plate="-", box=box, seed=seed, **given))

    def png(a):
        data = cv2.imencode(".png", (np.clip(a, 0, 1) * 255).astype(np.uint8))[1].tobytes()
        return "data:image/png;base64," + base64.b64encode(data).decode()
    # The holdouts the render keeps: estimate() placed them and dropped those not in front.
    return {"estimates": est, "explain": estimates.describe(est), "matte": png(m.building),
            "holdouts": png(m.objects.matte())}


def _contact_sheet(root: Path, jobs: list[dict]) -> bytes:
    """The wedge's sheet, made as `derrumbe wedge` makes its own (review.py): each finished
    variant at 60 % of its shot, labelled with the value it varies."""
    import numpy as np
    from derrumbe import review
    frames, labels = [], []
    for j in jobs:
        mp = _inside(root, f"jobs/{j['id']}/out/manifest.json")
        m = json.loads(mp.read_text()) if mp else {}
        names = m.get("frames") or [""]
        f = _inside(root, f"jobs/{j['id']}/out/{names[int(len(names) * 0.6)]}")
        if f is not None:
            frames.append(f)
            labels.append(j["label"] or j["id"])
    if not frames:
        return review.png_bytes(np.zeros((270, 480, 3), np.uint8))
    return review.png_bytes(review.contact_sheet(frames, labels))


def serve(host: str, port: int, token: str | None, root: str, workers: int | None, extra_hosts=()) -> int:
    require_web()
    import uvicorn
    token = token or os.environ.get("DERRUMBE_TOKEN") or None
    if host not in LOOPBACK and not token:
        raise DerrumbeError(f"binding to {host} exposes the page beyond this machine: give --token-file "
                            f"(or DERRUMBE_TOKEN) so only people with it can use it")
    app = create_app(Path(root), token, workers, host=host, extra_hosts=extra_hosts)
    where = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    print(f"derrumbe: serving {where}" + (f"?token={token}  (a token is required: {host} is not loopback)"
                                           if token else "") + f"  work folder {app.state.root}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0


def _auto_holdouts(first_png: Path, box, size) -> dict:
    """What the matte stage would hold out on this frame, as a PNG data URL and a list."""
    import cv2
    import numpy as np

    import base64
    from derrumbe.stages.matte import compute_matte
    srgb = cv2.imread(str(first_png), cv2.IMREAD_COLOR)[..., ::-1]
    if (srgb.shape[1], srgb.shape[0]) != tuple(size):
        srgb = cv2.resize(srgb, tuple(size), interpolation=cv2.INTER_AREA)
    from derrumbe.stages.holdouts import standing_in_front
    from derrumbe.stages.camera import too_tall_by_the_facade
    srgb = np.ascontiguousarray(srgb)
    m = compute_matte(srgb, box, None, None, 1, judge=too_tall_by_the_facade(srgb))
    # Only what stands in front by its ground contact, as the matte stage cut it out of the
    # building: a figure in a shop window or a patch on a sill is no holdout of the render.
    front = standing_in_front(m.objects, m.building)
    png = cv2.imencode(".png", (np.clip(front.matte(), 0, 1) * 255).astype(np.uint8))[1].tobytes()
    return {"matte": "data:image/png;base64," + base64.b64encode(png).decode(), "objects": front.as_list()}
