"""Command line: `derrumbe shot`, `derrumbe demo`.

Options are generated from the ShotSpec's field table, so the CLI, the TOML spec and
the manifest never disagree. A DerrumbeError becomes one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from derrumbe import __version__
from derrumbe.errors import DerrumbeError
from derrumbe.spec import DUST_SRGB, WIND_DEFAULT, ShotSpec, _coerce, cli_fields


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump (a value with newlines stays on it)
        self.exit(2, f"derrumbe: error: {_one_line(message)}\n")


def _add_spec_options(p: argparse.ArgumentParser) -> None:
    for f in cli_fields():
        m = f.metadata
        flag = "--" + f.name.replace("_", "-")
        default = "estimated" if f.default is None and f.name in (
            "height_m", "focal_mm", "horizon_y", "sun_azimuth", "sun_elevation") else f.default
        default = {"wind": ",".join(map(str, WIND_DEFAULT)), "dust_color": ",".join(map(str, DUST_SRGB)),
                   "fps": "a video plate's rate, else 24", "duration": "a moving plate's length, else 6",
                   "plate_colorspace": "sRGB, or ACEScg for EXR"}.get(f.name, default)
        unit = f" [{m['unit']}]" if m["unit"] else ""
        rng = f" (range {m['lo']}..{m['hi']})" if m["lo"] is not None else ""
        help_ = f"{m['help']}{unit}{rng}; default: {default}"
        if isinstance(f.default, bool):
            p.add_argument(flag, action="store_true", default=None, help=help_)
        else:
            p.add_argument(flag, default=None, choices=m["choices"], metavar=None if m["choices"] else "VALUE",
                           help=help_)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="derrumbe", description="A plate of a real building in, a collapse shot out.")
    p.add_argument("--version", action="version", version=f"derrumbe {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    s = sub.add_parser("shot", help="render a collapse shot from a plate",
                       description="Render a collapse of the building in PLATE into OUT.")
    s.add_argument("plate", nargs="?", help="plate: image (JPEG/PNG/TIFF/EXR), video (MP4/MOV) or image sequence "
                                            "(plate.####.png|exr); optional with --spec")
    s.add_argument("-o", "--out", required=True, help="output folder (frames, movie, manifest)")
    s.add_argument("--spec", help="shot spec: a .toml file or a manifest.json of an earlier render; "
                                  "options given here override it")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    s.add_argument("--progress-json", action="store_true",
                   help="progress as one JSON object a line on stderr (stage, done, total, seconds), for tools")
    s.add_argument("--explain", action="store_true",
                   help="say which stages would run and why (what changed since the last render), and stop")
    _add_cluster_options(s)
    _add_spec_options(s)
    _add_farm_commands(sub)
    d = sub.add_parser("demo", help="render the demo shot (a real street photograph that ships with derrumbe)",
                       description="Render the collapse of the two-storey building in the bundled street photograph "
                                   "(CC0; see derrumbe/data/demo_street.json).")
    d.add_argument("-o", "--out", default="out/demo", help="output folder; default: out/demo")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    d.add_argument("--preview", action="store_true", default=None, help="fast low-resolution look")
    d.add_argument("--style", default=None, choices=("implosion", "topple", "facade"), help="collapse style")
    for flag in ("passes", "exr", "usd", "prores", "burn_in"):
        f = next(f for f in cli_fields() if f.name == flag)
        d.add_argument("--" + flag.replace("_", "-"), action="store_true", default=None, help=f.metadata["help"])
    r = sub.add_parser("refine", help="make a rendered shot photoreal with a local video-diffusion model",
                       description="Refine a shot rendered with --exr: Wan 2.1/2.2 image-to-video from a local folder, "
                                   "conditioned on the coarse animation, composited back inside the effect matte.")
    r.add_argument("shot_dir", help="a shot folder rendered with --exr")
    r.add_argument("--model", required=True, help="folder of diffusers Wan image-to-video weights (model_index.json)")
    r.add_argument("--strength", type=float, default=0.6,
                   help="noise level the effect starts from, 0.05..1 (the rest of the frame is held to the coarse "
                        "render until half of it); default: 0.6")
    r.add_argument("--seed", type=int, default=1, help="random seed; default: 1")
    r.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda when available")
    r.add_argument("--prompt", default=None, help="what the shot should look like; default: a photoreal collapse")
    r.add_argument("--steps", type=int, default=30, help="denoising steps of a full schedule; default: 30")
    r.add_argument("--guidance", type=float, default=5.0, help="classifier-free guidance scale; default: 5")
    r.add_argument("--model-size", default=None, help="model frame WxH; default: 832x480's area at the shot's aspect")
    r.add_argument("--window", type=int, default=81, help="frames per window, 4k+1; default: 81")
    r.add_argument("--overlap", type=int, default=9, help="frames shared by consecutive windows; default: 9")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    w = sub.add_parser("serve", help="the web page: upload a plate, box it, preview, render, download",
                       description="Serve derrumbe's page on this machine (needs the web extra: make serve).")
    w.add_argument("--host", default="127.0.0.1", help="address to bind; anything but loopback needs --token; "
                                                       "default: 127.0.0.1")
    w.add_argument("--port", type=int, default=8000, help="default: 8000")
    w.add_argument("--token-file", default=None,
                   help="file holding the access token (or the DERRUMBE_TOKEN environment variable); "
                        "required off loopback")
    w.add_argument("--token", default=None, help="the access token itself: visible to every user of this machine "
                                                 "in the process list; prefer --token-file or DERRUMBE_TOKEN")
    w.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="a host name the page may be reached by besides the bound address and loopback "
                        "(e.g. the machine's name on the studio network); repeatable")
    w.add_argument("--root", default="~/.derrumbe-web", help="work folder: uploads, jobs, the queue; "
                                                              "default: ~/.derrumbe-web")
    w.add_argument("--jobs", type=int, default=None, help="renders at once; default: one per 4 cores, at least 1")
    w.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="render every job on this Dask scheduler's workers (shared storage for --root); "
                        "default: on this machine")
    c = sub.add_parser("cache", help="list or clean a shot folder's stage cache",
                       description="Each stage's result is stored in SHOT_DIR/.derrumbe under a hash of its inputs.")
    c.add_argument("action", choices=("ls", "clean"), help="ls: stages, sizes, hashes; clean: remove what the "
                                                          "last render did not use (--all: everything)")
    c.add_argument("shot_dir")
    c.add_argument("--all", action="store_true", help="with clean: remove the whole cache")
    return p


def _add_cluster_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="run on this Dask scheduler's workers (they must see the output folder and the plate at the "
                        "same paths: shared storage); 'local': a cluster of this machine's processes; default: this "
                        "process (needs the farm extra otherwise)")
    p.add_argument("--workers", type=int, default=None, help="with --scheduler local: worker processes; default: "
                                                             "one per core")
    p.add_argument("--chunk", type=int, default=None, help="frames a task on a cluster; default: 8")


def _add_farm_commands(sub) -> None:
    """The per-stage commands a farm runs over a shot folder, the farm job, wedges and batches."""
    for name, help_ in (("sim", "run the simulation side of a shot folder (matte to dust, the clean plate)"),
                        ("render", "render a chunk of a shot folder's frames (after `derrumbe sim`)"),
                        ("encode", "write a shot folder's movies, VDBs, USD and manifest (after every frame)")):
        c = sub.add_parser(name, help=help_, description=help_ + "; reads SHOT/job.toml (or its manifest's spec)")
        c.add_argument("shot_dir")
        if name == "render":
            c.add_argument("--frames", required=True, help="frame numbers FIRST-LAST, e.g. 1001-1024")
        c.add_argument("-q", "--quiet", action="store_true", help="no progress output")
        c.add_argument("--progress-json", action="store_true", help="progress as JSON lines on stderr")
    f = sub.add_parser("farm-export", help="write a render-farm job (Open Job Description, Deadline, OpenCue) "
                                           "for a shot folder",
                       description="Write the job that runs `derrumbe sim`, then `derrumbe render` in frame chunks, "
                                   "then `derrumbe encode` over SHOT on a farm.")
    f.add_argument("shot_dir")
    f.add_argument("--format", required=True, choices=("openjd", "deadline", "opencue"))
    f.add_argument("--spec", default=None, help="the shot's spec (TOML or a manifest), stored as SHOT/job.toml; "
                                                "default: the job.toml already there")
    f.add_argument("--chunk", type=int, default=8, help="frames a task; default: 8")
    f.add_argument("--derrumbe", default="derrumbe", help="the derrumbe command on the farm's workers; "
                                                         "default: derrumbe")
    w = sub.add_parser("wedge", help="render variants of a shot and a contact sheet and review movie of them",
                       description="Every combination of the --vary values, sharing the stages they have in common.")
    w.add_argument("spec", help="the shot's spec: a TOML file or a manifest.json")
    w.add_argument("--vary", action="append", required=True, metavar="FIELD=VALUES",
                   help="a spec field and its values: seed=1..8, style=implosion,topple, wind=2:90,6:90; repeatable")
    w.add_argument("-o", "--out", required=True, help="the wedge folder (a subfolder a variant, a shared cache)")
    w.add_argument("-q", "--quiet", action="store_true")
    w.add_argument("--progress-json", action="store_true")
    _add_cluster_options(w)
    b = sub.add_parser("batch", help="render the shots of a TOML file and a summary table",
                       description="[defaults] fields, then [[shot]] tables each with out = \"folder\" and its fields.")
    b.add_argument("file")
    b.add_argument("-q", "--quiet", action="store_true")
    b.add_argument("--progress-json", action="store_true")
    _add_cluster_options(b)


def _spec_from_args(args) -> ShotSpec:
    spec = ShotSpec.load(args.spec) if args.spec else ShotSpec()
    d = spec.to_dict()
    if args.plate:
        d["plate"] = args.plate
    for f in cli_fields():
        v = getattr(args, f.name, None)
        if v is not None:
            d[f.name] = _coerce(f, v)
    # --box and --mask exclude each other; one given on the command line replaces the spec's.
    if getattr(args, "box", None) is not None:
        d.pop("mask", None)
    if getattr(args, "mask", None) is not None:
        d.pop("box", None)
    spec = ShotSpec.from_dict(d)
    for k in ("plate", "mask", "holdout"):
        v = getattr(spec, k)
        if v:
            setattr(spec, k, str(Path(v).expanduser().resolve()))
    return spec.validate()


def _progress(quiet: bool, as_json: bool = False):
    from derrumbe.progress import Progress
    if as_json:
        import json
        import time

        class JsonStages(Progress):
            """What the web page's job runner reads: a line per stage start, end and a
            few updates in between."""
            def __init__(self):
                self.t0 = time.perf_counter()
                self.name, self.ts, self.last = None, self.t0, 0.0

            def _emit(self, **kw):
                kw.update(stage=self.name, elapsed=round(time.perf_counter() - self.t0, 2),
                          stage_elapsed=round(time.perf_counter() - self.ts, 2))
                print(json.dumps(kw), file=sys.stderr, flush=True)

            def stage(self, name, total=None):
                self.name, self.ts = name, time.perf_counter()
                self._emit(event="start", done=0, total=total or 1)

            def advance(self, done, total):
                if time.perf_counter() - self.last > 0.25 or done == total:
                    self.last = time.perf_counter()
                    self._emit(event="progress", done=done, total=total)

            def end(self):
                self._emit(event="end")

            def chunk(self, shot, first, last, state, worker="", done=0, total=0):
                self._emit(event="chunk", shot=shot, first=first, last=last, state=state, worker=worker,
                           done=done, total=total)

        return JsonStages(), (lambda s: print(json.dumps({"event": "log", "text": s}), file=sys.stderr, flush=True))
    if quiet:
        return Progress(), (lambda s: None)
    from rich.console import Console
    from rich.progress import BarColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)

    class RichStages(Progress):
        def __init__(self):
            self.bar = RichProgress(TextColumn("{task.description:<11}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                    TimeElapsedColumn(), console=console, transient=False)
            self.bar.start()
            self.task = None

        def stage(self, name, total=None):
            self.task = self.bar.add_task(name, total=total or 1)

        def advance(self, done, total):
            self.bar.update(self.task, completed=done, total=total)

        def end(self):
            if self.task is not None:
                t = self.bar.tasks[-1]
                self.bar.update(self.task, completed=t.total)

        def chunk(self, shot, first, last, state, worker="", done=0, total=0):
            if state != "queued":
                console.print(f"[dim]{shot} {first}-{last}: {state}{' on ' + worker if worker else ''}[/dim]")

        def note(self, text):
            console.print(f"[dim]{text}[/dim]")

        def stop(self):
            self.bar.stop()

    return RichStages(), (lambda s: console.print(f"[dim]{s}[/dim]"))


def _run(spec: ShotSpec, out: str, quiet: bool, progress_json: bool = False, cluster=None) -> int:
    import dataclasses
    from derrumbe.pipeline import run_shot
    refine = spec.refine_settings() if spec.refine else None
    if refine is not None:
        spec = dataclasses.replace(spec, exr=True)       # refine reads the matte and vectors from the EXRs
        from derrumbe.generative import require_torch
        require_torch()                                  # fail before the render, not after
    prog, log = _progress(quiet, progress_json)
    try:
        if cluster is not None and (cluster.scheduler or cluster.workers):
            from derrumbe.runners.dask_cluster import CHUNK, run_shot_on_cluster
            m = run_shot_on_cluster(spec, out, cluster.scheduler, cluster.workers, prog, log, cluster.chunk or CHUNK)
        else:
            m = run_shot(spec, out, prog, log)
    finally:
        if hasattr(prog, "stop"):
            prog.stop()
    if not quiet:
        t = m["timings_s"]
        extra = "".join(f", {x}" for x in m["movies"][1:]) + (", EXRs" if m.get("exr") else "") + \
            (f", {m['usd']['file']}" if m.get("usd") else "")
        print(f"wrote {len(m['frames'])} frames {m['size'][0]}x{m['size'][1]}, {m['movie']}{extra} to {out}; "
              f"total {sum(t.values()):.1f} s (" + ", ".join(f"{k} {v:.1f}" for k, v in t.items()) + ")",
              file=sys.stderr)
    if refine is not None:
        return _do_refine(out, refine, quiet)
    return 0


def _demo(args) -> int:
    """The demo shot: a real street photograph that ships with derrumbe (data/, CC0, its
    source and box in demo_street.json), copied into the shot folder so the manifest's
    plate travels with it. No height is given: the scale estimator decides."""
    import json
    from importlib.resources import files
    from derrumbe.files import atomic_write_bytes
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DerrumbeError(f"cannot write to output folder {out}: {e.strerror or e}") from None
    data = files("derrumbe.data")
    about = json.loads(data.joinpath("demo_street.json").read_text())
    plate = out / "demo_plate.jpg"
    atomic_write_bytes(plate, data.joinpath(about["file"]).read_bytes())
    spec = ShotSpec(plate=str(plate.resolve()), box=list(about["box"]), name="demo",
                    style=args.style or "implosion", preview=bool(args.preview),
                    **{k: bool(getattr(args, k)) for k in ("passes", "exr", "usd", "prores", "burn_in")})
    return _run(spec.validate(), str(out), args.quiet)


def _farm(args) -> int:
    from derrumbe import farm
    if args.cmd == "farm-export":
        shot = Path(args.shot_dir)
        if args.spec:
            farm.write_job(shot, _resolved(ShotSpec.load(args.spec)))
        if args.chunk < 1:
            raise DerrumbeError("--chunk must be at least 1 frame")
        p = farm.export(shot, args.format, args.chunk, args.derrumbe)
        print(f"wrote {p}")
        return 0
    quiet = args.quiet or args.progress_json
    prog, log = _progress(quiet, args.progress_json)
    try:
        return _farm_run(args, farm, prog, log, quiet)
    finally:
        if hasattr(prog, "stop"):
            prog.stop()


def _farm_run(args, farm, prog, log, quiet) -> int:
    say = (lambda s: None) if quiet else (lambda s: print(s, file=sys.stderr))
    if args.cmd == "sim":
        info = farm.run_sim(Path(args.shot_dir), prog, log)
        say("sim side done: " + ", ".join(f"{k} {v}" for k, v in info["stages"].items()))
    elif args.cmd == "render":
        info = farm.run_render(Path(args.shot_dir), args.frames, prog, log)
        say(f"frames {args.frames}: {len(info['rendered'])} rendered, {len(info['reused'])} already done")
    elif args.cmd == "encode":
        m = farm.run_encode(Path(args.shot_dir), prog, log)
        say(f"wrote {', '.join(m['movies'])} and the manifest to {args.shot_dir}")
    elif args.cmd == "wedge":
        from derrumbe import wedge
        spec = _resolved(ShotSpec.load(args.spec))
        info = wedge.run_wedge(spec, wedge.parse_vary(args.vary), Path(args.out), args.scheduler, args.workers,
                               prog, log, cluster=bool(args.workers))
        say(f"{len(info['variants'])} variants in {info['seconds']:.0f} s: {args.out}/{info['sheet']}, "
            f"{args.out}/{info['movie']}")
    elif args.cmd == "batch":
        from derrumbe import wedge
        rows = wedge.run_batch(Path(args.file), args.scheduler, args.workers, prog, log, cluster=bool(args.workers))
        for r in rows:
            say(f"{r['shot']:<16} {r['status'][:60]:<60} {r['seconds']:7.1f} s  {r['movie']}")
        return 0 if all(r["status"] == "done" for r in rows) else 1
    return 0


def _resolved(spec: ShotSpec) -> ShotSpec:
    for k in ("plate", "mask", "holdout"):
        v = getattr(spec, k)
        if v:
            setattr(spec, k, str(Path(v).expanduser().resolve()))
    return spec.validate()


def _refine(args) -> int:
    from derrumbe.refine import DEFAULT_PROMPT, RefineSettings
    s = RefineSettings(model=args.model, strength=args.strength, seed=args.seed, device=args.device,
                       prompt=args.prompt or DEFAULT_PROMPT, steps=args.steps, guidance=args.guidance,
                       size=args.model_size, window=args.window, overlap=args.overlap)
    return _do_refine(args.shot_dir, s, args.quiet)


def _do_refine(shot_dir, settings, quiet: bool) -> int:
    from derrumbe.refine import run_refine
    log = (lambda s: None) if quiet else (lambda s: print(s, file=sys.stderr))
    info = run_refine(shot_dir, settings, log)
    if not quiet:
        print(f"refined {len(info['frames'])} frames on {info['device']} ({info['dtype']}) in "
              f"{info['timings_s']['total']:.1f} s: {shot_dir}/refined/, {info['movie']}", file=sys.stderr)
    return 0


def _token(args) -> str | None:
    """The server's token: from --token-file, DERRUMBE_TOKEN, or (visible in the
    process list, so with a warning) --token."""
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as f:
                token = f.read(4096).strip()
        except (OSError, ValueError) as e:
            raise DerrumbeError(f"cannot read --token-file {args.token_file}: "
                                f"{getattr(e, 'strerror', None) or e}") from None
        if len(token) < 16:
            raise DerrumbeError("the token in --token-file is shorter than 16 characters")
        return token
    if args.token:
        print("derrumbe: warning: --token is visible to every user of this machine in the process list; "
              "use --token-file or DERRUMBE_TOKEN", file=sys.stderr)
        return args.token
    return os.environ.get("DERRUMBE_TOKEN") or None


def _cache(args) -> int:
    from derrumbe.cache import ShotLock, StageCache, dir_size, remove
    out = Path(args.shot_dir)
    if not (out / ".derrumbe").is_dir():
        raise DerrumbeError(f"{out} has no derrumbe cache (no .derrumbe folder)")
    cache = StageCache(out)
    used = set(cache.last_keys().values())
    entries = cache.entries()
    if args.action == "ls":
        total = 0
        for e in entries:
            size = dir_size(e.path) + (dir_size(e.path.with_suffix(".json")) if e.path.is_file() else 0)
            total += size
            state = "current" if e.key in used else "stale"
            extra = f", {e.meta.get('frames')} frames" if e.stage == "dust" else ""
            print(f"{e.stage:<10} {e.key}  {size / 1e6:8.1f} MB  {state}{extra}")
        print(f"{len(entries)} entries, {total / 1e6:.1f} MB in {out / '.derrumbe'}")
        return 0
    with ShotLock(out):
        gone = 0
        for e in entries:
            if args.all or e.key not in used:
                gone += dir_size(e.path)
                remove(e.path)
        if args.all:
            remove(out / ".derrumbe" / "frames")
            (out / ".derrumbe" / "keys.json").unlink(missing_ok=True)
    print(f"removed {gone / 1e6:.1f} MB from {out / '.derrumbe'}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if argv is None:                # the real command (not a test calling main in-process)
        _die_with_parent()
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if args.cmd == "demo":
            return _demo(args)
        if args.cmd == "cache":
            return _cache(args)
        if args.cmd == "refine":
            return _refine(args)
        if args.cmd in ("sim", "render", "encode", "farm-export", "wedge", "batch"):
            return _farm(args)
        if args.cmd == "serve":
            from derrumbe.web.app import serve
            if args.scheduler:
                os.environ["DERRUMBE_SCHEDULER"] = args.scheduler
            return serve(args.host, args.port, _token(args), args.root, args.jobs, args.allowed_host)
        spec = _spec_from_args(args)
        if args.explain:
            from derrumbe.pipeline import explain
            for line in explain(spec, args.out):
                print(line)
            return 0
        return _run(spec, args.out, args.quiet or args.progress_json, args.progress_json, args)
    except DerrumbeError as e:
        print(f"derrumbe: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except (OSError, MemoryError) as e:
        # The machine, not derrumbe: a full disk, a folder that went away, no memory left.
        print(f"derrumbe: error: {_environment(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("derrumbe: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("derrumbe: terminated", file=sys.stderr)
        return 143


def _one_line(text: str) -> str:
    return " ".join(text.split())[:2000]


def _environment(e: BaseException) -> str:
    if isinstance(e, MemoryError):
        return "out of memory: the plate or the settings need more memory than this machine has " \
               "(try --preview or a smaller --size)"
    what = e.strerror or str(e) or type(e).__name__
    # The file's name, not its absolute path (server paths stay out of messages).
    name = Path(e.filename).name if getattr(e, "filename", None) else ""
    return _one_line(f"{what}{': ' + name if name else ''}")


class _Terminated(BaseException):
    """SIGTERM (a cancelled job, a server shutting down): unwinds like Ctrl-C, so every
    writer removes its temporary file and the shot lock is released."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def _die_with_parent() -> None:
    """A render started by `derrumbe serve` dies with it, even after a kill -9 of the
    server: Linux sends it SIGKILL when the server goes (PR_SET_PDEATHSIG). The server
    names itself in DERRUMBE_PARENT_PID; if it is already gone, stop now."""
    parent = os.environ.get("DERRUMBE_PARENT_PID")
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if str(os.getppid()) != parent:
        os._exit(143)


if __name__ == "__main__":
    raise SystemExit(main())
