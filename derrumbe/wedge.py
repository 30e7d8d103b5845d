"""Wedges and batches: many variants of a shot, or a sequence of shots, in one run.

A wedge renders every combination of the values given (`--vary seed=1..8 --vary
style=implosion,topple`) into one folder whose stage cache all variants share: variants
that differ only downstream (the grain, the dust colour, the size) share the matte, the
fracture, the simulation and the dust, computed once, here as on a cluster (where each
stage is one task keyed by its cache key). It ends with a labelled contact sheet and a
side-by-side review movie. A batch renders the shots of a TOML file, each into its own
folder, and writes a summary table of status, time and outputs.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
import tomllib
from pathlib import Path

from derrumbe.cache import ShotLock
from derrumbe.errors import DerrumbeError
from derrumbe.files import atomic_write_bytes
from derrumbe.spec import ShotSpec, check_field
from derrumbe.stages.manifest import version_manifest_path

MAX_VARIANTS = 64


def parse_vary(items: list[str]) -> dict[str, list]:
    """FIELD=V1,V2,... or FIELD=A..B (whole numbers) for each item, every value checked as
    the spec checks it."""
    vary: dict[str, list] = {}
    for item in items:
        field, eq, text = item.partition("=")
        field = field.strip().replace("-", "_")
        if not eq or not text.strip():
            raise DerrumbeError(f"--vary takes FIELD=V1,V2 or FIELD=A..B, not {item!r}")
        if field in ("plate", "mask", "holdout", "name", "refine"):
            raise DerrumbeError(f"--vary {field}: a wedge varies the look and the collapse, not the inputs")
        if ".." in text:
            a, _, b = text.partition("..")
            try:
                lo, hi = int(a), int(b)
            except ValueError:
                raise DerrumbeError(f"--vary {field}={text}: a range A..B takes whole numbers") from None
            if not lo <= hi <= lo + MAX_VARIANTS:
                raise DerrumbeError(f"--vary {field}={text}: the range must go up, at most {MAX_VARIANTS} values")
            values = list(range(lo, hi + 1))
        else:
            # A list field (wind, dust colour) takes its items with ':' between them.
            values = [v.strip().replace(":", ",") for v in text.split(",") if v.strip()]
        vary[field] = [check_field(field, v) for v in values]
    n = 1
    for v in vary.values():
        n *= len(v)
    if n > MAX_VARIANTS:
        raise DerrumbeError(f"the wedge has {n} variants; at most {MAX_VARIANTS}")
    return vary


def variants(spec: ShotSpec, vary: dict[str, list]) -> list[tuple[str, str, ShotSpec]]:
    """(label, folder name, spec) of every combination, in order."""
    out = []
    fields = list(vary)
    for k, combo in enumerate(itertools.product(*(vary[f] for f in fields))):
        changes = dict(zip(fields, combo))
        label = " ".join(f"{f}={_show(v)}" for f, v in changes.items())
        folder = f"v{k + 1:02d}_" + "_".join(f"{f}-{_show(v)}" for f, v in changes.items())
        folder = "".join(c if c.isalnum() or c in "._-" else "-" for c in folder)[:120]
        out.append((label, folder, dataclasses.replace(spec, **changes).validate()))
    return out


def _show(v) -> str:
    return ":".join(map(str, v)) if isinstance(v, list) else str(v)


def run_wedge(spec: ShotSpec, vary: dict[str, list], out: Path, scheduler: str | None = None,
              workers: int | None = None, progress=None, log=None, cluster: bool = False) -> dict:
    from derrumbe.progress import Progress
    progress = progress or Progress()
    out.mkdir(parents=True, exist_ok=True)
    vs = variants(spec, vary)
    t0 = time.perf_counter()
    with ShotLock(out):
        if cluster or scheduler:
            manifests = _on_cluster([(out / folder, s, out) for _, folder, s in vs], scheduler, workers, progress, log)
        else:
            from derrumbe.pipeline import run_shot
            manifests = []
            for label, folder, s in vs:
                progress.note(f"variant {label}")
                manifests.append(run_shot(s, out / folder, progress, log, cache_root=out, locked=True))
    labels = [label for label, _, _ in vs]
    dirs = [out / folder for _, folder, _ in vs]
    return finish_wedge(out, labels, dirs, manifests, time.perf_counter() - t0)


def _on_cluster(jobs, scheduler, workers, progress, log) -> list[dict]:
    """(folder, spec, cache root or None) of each shot, rendered together on one cluster
    (the caller holds the folders' locks)."""
    from derrumbe.graph import derive_keys
    from derrumbe.pipeline import begin
    from derrumbe.runners.dask_cluster import connect, run_on_cluster
    from derrumbe.scene import open_scene
    scenes = []
    try:
        for folder, s, cache_root in jobs:
            scene = open_scene(s, folder, cache_root, progress, log)
            scenes.append(scene)
            derive_keys(scene)
            begin(scene)
        with connect(scheduler, workers) as client:
            return run_on_cluster(scenes, client, progress)
    finally:
        for scene in scenes:
            scene.close()


def finish_wedge(out: Path, labels: list[str], dirs: list[Path], manifests: list[dict], seconds: float) -> dict:
    """The contact sheet (each variant at 60 % of the shot, where the collapse is under way)
    and the side-by-side movie."""
    from derrumbe import review
    seqs = [[d / f for f in m["frames"]] for d, m in zip(dirs, manifests)]
    sheet = review.contact_sheet([s[int(len(s) * 0.6)] for s in seqs], labels)
    review.write_png(out / "wedge_sheet.png", sheet)
    review.side_by_side(out / "wedge_review.mp4", seqs, labels, manifests[0]["fps"])
    stages = [m["cache"]["stages"] for m in manifests]
    summary = {"variants": [{"label": lab, "folder": d.name, "stages": st} for lab, d, st in zip(labels, dirs, stages)],
               "sheet": "wedge_sheet.png", "movie": "wedge_review.mp4", "seconds": round(seconds, 1)}
    import json
    atomic_write_bytes(out / "wedge.json", json.dumps(summary, indent=1).encode())
    return summary


# ---- batches ------------------------------------------------------------------------------------
def load_batch(path: Path) -> list[tuple[Path, ShotSpec]]:
    """[defaults] fields for every shot, then [[shot]] tables (each with `out`, a folder
    relative to the file, and its own fields); paths relative to the file."""
    try:
        d = tomllib.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DerrumbeError(f"cannot read batch {path.name}: {str(e).splitlines()[0][:200]}") from None
    shots = d.get("shot")
    if not isinstance(shots, list) or not shots:
        raise DerrumbeError(f"batch {path.name} has no [[shot]] tables")
    defaults = d.get("defaults", {})
    out = []
    for k, s in enumerate(shots):
        s = {**defaults, **s}
        folder = s.pop("out", None)
        if not isinstance(folder, str) or not folder:
            raise DerrumbeError(f"[[shot]] {k + 1} of {path.name} needs out = \"folder\"")
        spec = ShotSpec.from_dict(s, path.parent.resolve()).validate()
        out.append(((path.parent / folder).resolve(), spec))
    if len({o for o, _ in out}) != len(out):
        raise DerrumbeError(f"two shots of {path.name} render into one folder")
    return out


def run_batch(path: Path, scheduler: str | None = None, workers: int | None = None, progress=None, log=None,
              cluster: bool = False) -> list[dict]:
    """Every shot of the batch; one failing shot does not stop the others. Writes
    batch_summary.md and .csv beside the batch file."""
    from derrumbe.pipeline import run_shot
    from derrumbe.progress import Progress
    progress = progress or Progress()
    shots = load_batch(path)
    rows = []
    if cluster or scheduler:
        t0 = time.perf_counter()
        try:
            with _locks([o for o, _ in shots]):
                ms = _on_cluster([(o, s, None) for o, s in shots], scheduler, workers, progress, log)
            for (o, s), m in zip(shots, ms):
                rows.append(_row(o, s, "done", time.perf_counter() - t0, m))
        except DerrumbeError as e:
            rows = [_row(o, s, f"failed: {e}", time.perf_counter() - t0, None) for o, s in shots]
    else:
        for o, s in shots:
            t0 = time.perf_counter()
            try:
                m = run_shot(s, o, progress, log)
                rows.append(_row(o, s, "done", time.perf_counter() - t0, m))
            except DerrumbeError as e:
                rows.append(_row(o, s, f"failed: {e}", time.perf_counter() - t0, None))
    write_summary(path.parent / "batch_summary", rows)
    return rows


class _locks:
    def __init__(self, folders):
        self.locks = [ShotLock(f) for f in folders]

    def __enter__(self):
        taken = []
        try:
            for lk in self.locks:
                lk.__enter__()
                taken.append(lk)
        except BaseException:
            for lk in taken:
                lk.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for lk in self.locks:
            lk.__exit__(*exc)


def _row(out: Path, spec: ShotSpec, status: str, seconds: float, m: dict | None) -> dict:
    # The version's own manifest: a later version rendered into the folder leaves it as it is.
    return {"shot": spec.name, "version": spec.version, "folder": str(out), "status": status,
            "seconds": round(seconds, 1), "frames": len(m["frames"]) if m else 0,
            "size": "x".join(map(str, m["size"])) if m else "", "movie": str(out / m["movie"]) if m else "",
            "manifest": str(version_manifest_path(out, m["stem"])) if m else ""}


def write_summary(stem: Path, rows: list[dict]) -> None:
    import csv
    import io
    cols = list(rows[0])
    buf = io.StringIO()
    w = csv.DictWriter(buf, cols)
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(stem.with_suffix(".csv"), buf.getvalue().encode())
    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(str(r[c]).replace("|", "/") for c in cols) + " |" for r in rows]
    atomic_write_bytes(stem.with_suffix(".md"), ("\n".join(md) + "\n").encode())

