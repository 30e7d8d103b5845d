"""The layout is a map of the stage graph: imports run one way, down the graph.

Every `import derrumbe.X` / `from derrumbe.X import` in the package (module level or inside
a function: a lazy import is still a dependency) must name a module at the same level or
below. A module not placed in LEVELS fails the test, so a new one gets a place on purpose.
"""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "derrumbe"

# Lowest first. Within "stages" the order is the graph's: a stage may read an earlier
# stage's types, never a later one's.
LEVELS = [
    ["errors", "files", "colour", "materials", "progress", "eta", "kernels", "engines", "data", "demo",
     "generative.noise_warp"],
    ["spec", "cache"],
    ["stages.plate", "stages.pedestrian_net", "stages.holdout_cues.cutout", "stages.holdout_cues", "stages.holdouts",
     "stages.matte", "stages.moving_holdouts",
     "stages.keystone", "stages.facade", "stages.scale", "stages.camera", "stages.material", "stages.view",
     "stages.plate_texture", "stages.photo_wall", "stages.cleanplate",
     "stages.structure", "stages.windows", "stages.fracture", "stages.simulate", "stages.poses", "stages.particles", "stages.heap",
     "stages.dust_sources", "stages.dust", "stages.vdb", "stages.lighting", "stages.debris_mesh",
     "stages.debris_shaders", "stages.motion_fill", "stages.render", "stages.dust_render", "stages.comp", "stages.exr", "stages.outputs",
     "stages.movies", "stages.manifest", "stages.usd_export"],
    ["backends", "estimates"],
    ["scene"],
    ["graph"],
    ["frames"],
    ["deliver"],
    ["pipeline"],
    ["runners"],
    ["review", "farm"],
    ["wedge"],
    ["generative", "refine"],
    ["cli", "web", "__main__"],
]
# Within one level, these may import each other in the direction given (a before b).
ORDERED = {2}
# simulate picks its style's plan from collapse_styles, which builds on simulate's types:
# one stage split over two files (the style plans are the art direction of the simulation).
SAME = {"stages.collapse_styles": "stages.simulate"}
# spec checks a [refine] table with refine's own settings class, without importing torch.
ALLOWED = {("spec", "refine")}


def _place(mod: str):
    mod = SAME.get(mod, mod)
    for lvl, names in enumerate(LEVELS):
        for pos, n in enumerate(names):
            if mod == n or mod.startswith(n + "."):
                return lvl, pos
    return None


def _module(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "derrumbe":
            base = node.module[len("derrumbe."):] if node.module != "derrumbe" else ""
            folder = PKG.joinpath(*base.split(".")) if base else PKG
            for a in node.names:        # from derrumbe.stages import exr: the module stages.exr
                sub = (folder / f"{a.name}.py").exists() or (folder / a.name).is_dir()
                target = ".".join(p for p in (base, a.name if sub else "") if p)
                if target:
                    yield node.lineno, target
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("derrumbe."):
                    yield node.lineno, a.name[len("derrumbe."):]


def test_every_module_has_a_place_and_imports_only_downward():
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        mod = _module(path)
        if mod in ("", "stages", "engines", "kernels", "web", "generative", "runners"):
            continue            # a package's __init__: a docstring, or what the package exports
        here = _place(mod)
        assert here is not None, f"{mod} has no level in tests/test_layout.py"
        for line, target in _imports(path):
            there = _place(target)
            assert there is not None, f"{mod}:{line} imports {target}, which has no level"
            if (mod.split(".")[0], target.split(".")[0]) in ALLOWED or target == mod or target == "":
                continue
            if SAME.get(mod, mod) == SAME.get(target, target):
                continue
            upward = there[0] > here[0] or (there[0] == here[0] and here[0] in ORDERED and there[1] > here[1])
            if upward:
                bad.append(f"{mod}:{line} imports {target}")
    assert not bad, "imports up the graph:\n" + "\n".join(bad)


def test_the_check_catches_an_upward_import(tmp_path):
    """The checker itself: a stage importing the runner is caught."""
    fake = tmp_path / "derrumbe"
    (fake / "stages").mkdir(parents=True)
    (fake / "stages" / "dust.py").write_text("from derrumbe.pipeline import run_shot\n")
    (fake / "pipeline.py").write_text("from derrumbe.stages.dust import DustSim\n")
    globals()["PKG"] = fake
    try:
        try:
            test_every_module_has_a_place_and_imports_only_downward()
        except AssertionError as e:
            assert "stages.dust:1 imports pipeline" in str(e)
        else:
            raise AssertionError("an upward import went unnoticed")
    finally:
        globals()["PKG"] = Path(__file__).resolve().parents[1] / "derrumbe"
