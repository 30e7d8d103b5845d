"""Command line: `derrumbe shot`, `derrumbe demo`.

Options are generated from the ShotSpec's field table, so the CLI, the TOML spec and
the manifest never disagree. A DerrumbeError becomes one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import signal
import sys
from pathlib import Path

from derrumbe import __version__
from derrumbe.errors import DerrumbeError
from derrumbe.materials import MATERIALS
from derrumbe.spec import DUST_SRGB, WIND_DEFAULT, ShotSpec, _coerce, cli_fields


class _Parser(argparse.ArgumentParser):
    """One line on error, no usage dump, and a suggestion where a name was mistyped."""

    def error(self, message):
        self.exit(2, f"derrumbe: error: {_one_line(_explain_error(message, self))}\n")

    def parse_args(self, args=None, namespace=None):
        argv = sys.argv[1:] if args is None else list(args)
        ns, extra = self.parse_known_args(argv, namespace)
        if extra:
            sub = _SUBPARSERS.get(getattr(ns, "cmd", None), self)
            self.error(_unknown_options(extra, sub))
        return ns


_SUBPARSERS: dict[str, argparse.ArgumentParser] = {}


def _options_of(parser: argparse.ArgumentParser) -> list[str]:
    return [o for a in parser._actions for o in a.option_strings if o.startswith("--")]


def _unknown_options(extra: list[str], parser: argparse.ArgumentParser) -> str:
    """'unrecognized' arguments, each with the nearest known option."""
    bad = [x for x in extra if x.startswith("-")] or extra
    word = bad[0].split("=", 1)[0]
    near = difflib.get_close_matches(word, _options_of(parser), n=1, cutoff=0.6)
    if word.startswith("-"):
        hint = f"; did you mean {near[0]}?" if near else f"; see derrumbe {parser.prog.split()[-1]} --help"
        return f"unknown option {word}{hint}"
    return f"unexpected argument {word!r} (a plate is given once; options start with --)"


def _explain_error(message: str, parser: argparse.ArgumentParser) -> str:
    m = re.match(r"argument (\S+): invalid choice: '?(.*?)'? \(choose from (.*)\)$", message)
    if m:
        name, got = m.group(1), m.group(2)
        choices = [c.strip(" '") for c in m.group(3).split(",")]
        near = difflib.get_close_matches(got, choices, n=1, cutoff=0.5)
        what = "unknown command" if name in ("cmd", "COMMAND") or name.startswith("{") else f"{name}: unknown value"
        return f"{what} {got!r}" + (f"; did you mean {near[0]}?" if near else f"; one of {', '.join(choices)}")
    if message.startswith("argument --version: expected one argument"):
        return (f"--version needs the shot's version number: --version 3 writes NAME_v003.####.png and "
                f"NAME_v003.mp4 beside earlier versions (derrumbe itself is {__version__}: derrumbe --version)")
    m = re.match(r"argument (--[\w-]+): expected one argument", message)
    if m:
        a = next((a for a in parser._actions if m.group(1) in a.option_strings), None)
        what = a.metavar if a is not None and isinstance(a.metavar, str) else "a value"
        return f"{m.group(1)} needs {what} after it"
    return message


# The shot options in the groups a compositor looks for them in; every spec field given
# on the command line is in exactly one (checked in build_parser).
SHOT_GROUPS = {
    "plate and matte": ("what is filmed and which building comes down",
                        ["plate_colorspace", "box", "mask", "holdout", "no_auto_holdouts"]),
    "camera and scale": ("estimated from the plate when absent: --explain prints the estimates",
                         ["height_m", "focal_mm", "horizon_y", "sun_azimuth", "sun_elevation"]),
    "collapse": ("how it comes down", ["style", "direction", "start", "material", "pieces", "seed"]),
    "dust": ("the cloud", ["dust", "wind", "dust_color", "see_through"]),
    "look": ("the finish of the frames", ["shutter", "shake", "grain", "preview", "size"]),
    "output": ("files, names, frames", ["name", "version", "frames", "fps", "duration", "passes", "exr", "usd",
                                        "vdb", "prores", "burn_in"]),
}
# Values named by what they are, not VALUE.
METAVARS = {"box": "X0,Y0,X1,Y1", "mask": "FILE.png", "holdout": "FILE.png", "plate_colorspace": "COLOURSPACE",
            "dust_color": "R,G,B", "size": "WxH", "wind": "SPEED,HEADING", "frames": "FIRST-LAST", "name": "NAME",
            "height_m": "METRES", "focal_mm": "MM", "horizon_y": "ROW", "sun_azimuth": "DEGREES",
            "sun_elevation": "DEGREES", "start": "SECONDS", "duration": "SECONDS", "fps": "FPS", "pieces": "N",
            "seed": "N", "version": "N", "shutter": "DEGREES", "dust": "AMOUNT", "shake": "AMOUNT", "grain": "AMOUNT",
            "see_through": "TAU"}
# What an option does when it is not given, where the field's own default is "absent".
DEFAULT_WORDS = {
    "box": "none: give --box or --mask", "mask": "none: give --box or --mask",
    "holdout": "none: the automatic holdouts only", "plate_colorspace": "sRGB, or ACEScg for EXR",
    "height_m": "estimated", "focal_mm": "26 mm, a phone's main camera", "horizon_y": "estimated",
    "sun_azimuth": "estimated", "sun_elevation": "40 deg", "wind": ",".join(f"{v:g}" for v in WIND_DEFAULT),
    "dust_color": "the material's dust: " + ",".join(map(str, DUST_SRGB)) + " concrete, "
                  + ",".join(map(str, MATERIALS["masonry"].dust_srgb)) + " old brickwork",
    "fps": "a video plate's rate, else 24",
    "duration": "a moving plate's length, else 6", "size": "the plate's size",
    "frames": "from 1001, as long as --duration",
}


def _add_spec_options(p: argparse.ArgumentParser) -> None:
    table = {f.name: f for f in cli_fields()}
    grouped = [n for _, names in SHOT_GROUPS.values() for n in names]
    missing = set(table) - set(grouped)
    if missing:
        raise RuntimeError(f"spec fields with no --help group: {sorted(missing)}")   # a field added without one
    for title, (about, names) in SHOT_GROUPS.items():
        g = p.add_argument_group(title, about)
        if title == "output":
            g.add_argument("-o", "--out", metavar="FOLDER", help="output folder: frames, movies, manifests "
                                                                  "(several versions share one)")
        for name in names:
            _add_spec_option(g, table[name])
        if title == "camera and scale":
            _add_sun_option(g)


def _add_sun_option(g) -> None:
    """--sun AZ,EL: both of the sun's angles at once (read in _spec_from_args)."""
    g.add_argument("--sun", default=None, metavar="AZ,EL",
                   help="the sun's direction in degrees, azimuth (0 = behind the camera, 90 = from the right) and "
                        "elevation: --sun-azimuth and --sun-elevation at once (--sun=-30,25: a leading minus needs the '='); "
                        "default: estimated")


def _add_spec_option(g, f) -> None:
    m = f.metadata
    flag = "--" + f.name.replace("_", "-")
    if isinstance(f.default, bool):
        g.add_argument(flag, action="store_true", default=None, help=m["help"])
        return
    unit = f" {m['unit']}" if m["unit"] and m["unit"] not in ("sRGB", "m/s,deg", "px") else ""
    rng = f"; {m['lo']:g}..{m['hi']:g}{unit}" if m["lo"] is not None and f.name not in ("horizon_y", "seed") else ""
    default = DEFAULT_WORDS.get(f.name, f.default)
    if isinstance(default, float):
        default = f"{default:g}"
    dflt = f"; default: {default}" + (unit if not isinstance(default, str) else "")
    g.add_argument(flag, default=None, choices=m["choices"], metavar=None if m["choices"] else METAVARS.get(f.name, "X"),
                   help=f"{m['help']}{rng}{dflt}".replace("%", "%%"))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="derrumbe", description="A plate of a real building in, a collapse shot out.",
                epilog="derrumbe COMMAND --help shows a command's options. Start with: derrumbe shot PLATE "
                       "--box X0,Y0,X1,Y1 -o OUT --explain (what it will estimate and run), then without --explain.")
    p.add_argument("--version", action="version", version=f"derrumbe {__version__}",
                   help="print derrumbe's version and exit")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)
    s = sub.add_parser("shot", help="render a collapse shot from a plate",
                       usage="derrumbe shot PLATE (--box X0,Y0,X1,Y1 | --mask FILE.png) -o FOLDER [options]",
                       description="Render a collapse of the building in PLATE into FOLDER. Positions are plate "
                                   "pixels from the top-left corner, y down (as in image editors; Nuke counts y "
                                   "from the bottom).",
                       epilog="Example: derrumbe shot plate.jpg --box 130,0,1280,650 -o out/shot --frames 1001-1144")
    s.add_argument("plate", nargs="?", help="plate: image (JPEG/PNG/TIFF/EXR), video (MP4/MOV) or image sequence "
                                            "(plate.####.png|exr); optional with --spec")
    _add_spec_options(s)
    f = s.add_argument_group("farm", "scripting, specs and queues")
    f.add_argument("--spec", metavar="FILE", help="shot spec: a .toml file or a manifest.json of an earlier render; "
                                                  "options given here override it")
    f.add_argument("--explain", action="store_true",
                   help="print the estimates (storeys, height, distance, lens, horizon, sun, holdouts, material) "
                        "and which stages would run and why, and stop")
    f.add_argument("-q", "--quiet", action="store_true", help="no progress output (warnings still print)")
    f.add_argument("--progress-json", action="store_true",
                   help="progress as one JSON object a line on stderr (stage, done, total, seconds, frame, "
                        "remaining), for queues and tools")
    _add_cluster_options(s.add_argument_group("cluster", "a Dask cluster instead of this process"))
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
    _SUBPARSERS.update(sub.choices)
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
    if getattr(args, "sun", None) is not None:
        parts = str(args.sun).split(",")
        if len(parts) != 2:
            raise DerrumbeError(f"--sun {_one_line(str(args.sun))[:40]!r}: give the azimuth and the elevation, e.g. --sun=-30,25")
        fields = {f.name: f for f in cli_fields()}
        d["sun_azimuth"] = _coerce(fields["sun_azimuth"], parts[0].strip())
        d["sun_elevation"] = _coerce(fields["sun_elevation"], parts[1].strip())
    # The shot's length is given once: --duration replaces a spec's frame range, --frames
    # (or a new --fps under a frame range) the spec's duration.
    if getattr(args, "duration", None) is not None and getattr(args, "frames", None) is None:
        d.pop("frames", None)
    if getattr(args, "frames", None) is not None or (getattr(args, "fps", None) is not None and d.get("frames")):
        if getattr(args, "duration", None) is None:
            d.pop("duration", None)
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


def _warn(text: str) -> None:
    print(f"derrumbe: warning: {_one_line(text)}", file=sys.stderr, flush=True)


FRAME_STAGES = ("dust", "render", "vdb")       # stages that count the shot's frames


def _progress(quiet: bool, as_json: bool = False):
    from derrumbe.eta import Estimator, clock_text
    from derrumbe.progress import Progress

    class Stages(Progress):
        """Follows the stages with an Estimator: per-stage and whole-shot time left."""
        def __init__(self):
            self.eta = Estimator()
            self.first = 1001

        def plan(self, seconds, first_frame):
            self.eta.set_plan(seconds)
            self.first = first_frame

        def stage(self, name, total=None):
            self.eta.start(name, total)

        def advance(self, done, total):
            self.eta.advance(done, total)

        def end(self):
            self.eta.end()

        def warn(self, text):
            _warn(text)

        def frame(self):
            """The frame number last finished, in the stages that count frames."""
            e = self.eta
            return self.first + e.done - 1 if e.stage in FRAME_STAGES and e.done > 0 else None

    if as_json:
        import json
        import time

        class JsonStages(Stages):
            """What the web page's job runner reads: a line per stage start, end and a
            few updates in between, each with the time left."""
            def __init__(self):
                super().__init__()
                self.t0 = time.perf_counter()
                self.name, self.ts, self.last = None, self.t0, 0.0

            def _emit(self, **kw):
                e = self.eta
                left_stage, left = e.stage_remaining(), e.total_remaining()
                kw.update(stage=self.name, elapsed=round(time.perf_counter() - self.t0, 2),
                          stage_elapsed=round(time.perf_counter() - self.ts, 2),
                          eta_stage=None if left_stage is None else round(left_stage, 1),
                          eta_total=None if left is None else round(left, 1), fraction=round(e.fraction(), 4),
                          frame=self.frame())
                print(json.dumps(kw), file=sys.stderr, flush=True)

            def plan(self, seconds, first_frame):
                super().plan(seconds, first_frame)
                print(json.dumps({"event": "plan", "first_frame": first_frame,
                                  "stages": {k: round(v, 1) for k, v in seconds.items()}}), file=sys.stderr, flush=True)

            def stage(self, name, total=None):
                super().stage(name, total)
                self.name, self.ts = name, time.perf_counter()
                self._emit(event="start", done=0, total=total or 1)

            def advance(self, done, total):
                super().advance(done, total)
                if time.perf_counter() - self.last > 0.25 or done == total:
                    self.last = time.perf_counter()
                    self._emit(event="progress", done=done, total=total)

            def end(self):
                super().end()
                self._emit(event="end", done=self.eta.total, total=self.eta.total)

            def warn(self, text):
                print(json.dumps({"event": "warning", "text": _one_line(text)}), file=sys.stderr, flush=True)

            def chunk(self, shot, first, last, state, worker="", done=0, total=0):
                self._emit(event="chunk", shot=shot, first=first, last=last, state=state, worker=worker,
                           done=done, total=total)

        return JsonStages(), (lambda s: print(json.dumps({"event": "log", "text": s}), file=sys.stderr, flush=True))
    if quiet:
        return Stages(), (lambda s: None)
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)

    class RichStages(Stages):
        """A bar a stage, and a 'shot' bar on top with the whole shot's time left, like
        Blender's 'Fra: 37 | Remaining: 01:23'. The bars appear once the inputs are checked
        (the plan comes after the plate stage), so a bad input is one line and nothing else."""
        def __init__(self):
            super().__init__()
            self.bar, self.task, self.early = None, None, []

        def _start(self):
            self.bar = RichProgress(TextColumn("{task.description:<11}"), BarColumn(bar_width=30),
                                    TextColumn("{task.fields[what]:<22}"), TimeElapsedColumn(),
                                    TextColumn("{task.fields[left]}"), console=console, transient=False,
                                    refresh_per_second=4)
            self.bar.start()
            self.shot = self.bar.add_task("shot", total=1000, what="", left="")
            for name in self.early:         # stages finished before the plan: done
                self.bar.add_task(name, total=1, completed=1, what="", left="")
            self.early = []

        def _update(self):
            if self.bar is None:
                return
            e = self.eta
            left = e.total_remaining()
            self.bar.update(self.shot, completed=int(1000 * e.fraction()),
                            left=f"Remaining {clock_text(left)}" if left is not None else "")
            if self.task is not None:
                f = self.frame()
                what = (f"Fra:{f}  " if f is not None else "") + f"{e.done}/{e.total}"
                ls = e.stage_remaining()
                self.bar.update(self.task, completed=e.done, total=e.total, what=what,
                                left=f"Remaining {clock_text(ls)}" if ls is not None and e.done < e.total else "")

        def plan(self, seconds, first_frame):
            super().plan(seconds, first_frame)
            if self.bar is None:
                self._start()
            self._update()

        def stage(self, name, total=None):
            super().stage(name, total)
            if self.bar is None:
                self.early.append(name)
                return
            self.task = self.bar.add_task(name, total=total or 1, what="", left="")
            self._update()

        def advance(self, done, total):
            super().advance(done, total)
            self._update()

        def end(self):
            if self.task is not None:
                self.eta.done = self.eta.total
                self._update()
            super().end()
            self._update()

        def warn(self, text):
            console.print(f"[bold yellow]derrumbe: warning:[/] {escape(_one_line(text))}", highlight=False)

        def chunk(self, shot, first, last, state, worker="", done=0, total=0):
            if state != "queued":
                console.print(f"[dim]{shot} {first}-{last}: {state}{' on ' + worker if worker else ''}[/dim]")

        def note(self, text):
            console.print(f"[dim]{text}[/dim]")

        def stop(self):
            if self.bar is not None:
                self.bar.update(self.shot, completed=1000, left="")
                self.bar.stop()

    return RichStages(), (lambda s: console.print(f"[dim]{escape(s)}[/dim]", highlight=False))


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
        print(f"wrote {m['stem']}: frames {m['first_frame']}-{m['last_frame']} {m['size'][0]}x{m['size'][1]}, "
              f"{m['movie']}{extra} to {out}; "
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cmd is None:                # `derrumbe` alone: what it can do
        parser.print_help()
        return 0
    if args.cmd == "shot" and not (args.plate or args.spec or args.out):
        _SUBPARSERS["shot"].print_help()
        return 0
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
        if not args.out:
            raise DerrumbeError("give the output folder: -o FOLDER (frames, movies and manifests go there)")
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
