"""Material presets: what --material changes in fracture, simulation and render.

Densities are bulk densities of a building (mostly air between slabs and walls), not
of solid concrete: what matters is that pieces of one building weigh alike.
Bond strength is in multiples of a piece's own weight (g-loads) that its welds carry
before they break, so it means the same at every scale.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Material:
    name: str
    density: float          # kg/m^3, bulk
    bond_g: float           # weld breaks above this many times the piece's weight
    facade_share: float     # fraction of the pieces spent on the front wall
    facade_depth_m: float   # thickness of the front wall slab
    shard_flatten: float    # >1 squashes facade cells into thin shards
    friction: float
    face_albedo: tuple      # scene-linear Rec.709 RGB of fracture faces (converted to ACEScg at use)
    face_rough: float       # amplitude of the aggregate texture on fracture faces


MATERIALS = {
    "concrete": Material("concrete", 450.0, 9.0, 0.45, 0.8, 1.0, 0.8, (0.42, 0.40, 0.37), 0.25),
    "masonry": Material("masonry", 400.0, 5.0, 0.50, 0.6, 1.0, 0.75, (0.40, 0.24, 0.17), 0.35),
    "glass": Material("glass", 250.0, 1.5, 0.65, 0.3, 3.0, 0.4, (0.20, 0.27, 0.27), 0.10),
}
