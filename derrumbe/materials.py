"""Material presets: what --material changes in the structure, the simulation and the render.

Densities are of the solid material: the structure stage models the air between walls
and slabs, so pieces weigh what real pieces of wall weigh.

Strength is a speed. A rigid group breaks when one contact gives it an impulse worth more
than this change of velocity (impulse / its mass): that means the same at every scale and
every time step, unlike a force. Bigger groups break at lower speeds (more flaws, longer
lever arms: the size effect of quasi-brittle materials), so the levels are listed from
coarse to fine. Numbers were set so a storey-sized block breaks on any real impact,
a metre-sized piece survives a fall of a metre or two, and a hand-sized fragment only
shatters when it lands from a storey or more (Hertzian impact fragmentation thresholds
of a few m/s for concrete lumps).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Material:
    name: str
    density: float          # kg/m^3 of the solid
    wall_m: float           # front and back wall thickness
    party_wall_m: float     # side walls
    break_speed: tuple      # m/s: storey block, cluster, piece, fragment (fragments then spall grit)
    crush: float            # storey resistance to crushing, in units of the weight above it
    friction: float
    restitution: float
    face_albedo: tuple      # scene-linear Rec.709 RGB of fracture faces (converted to ACEScg at use)
    face_rough: float       # amplitude of the aggregate texture on fracture faces
    dust_srgb: tuple = (196, 190, 178)   # its dust's albedo (sRGB): crushed concrete's light warm grey
    # Whether an implosion's charges are drilled into its walls' foot (collapse_styles'
    # CHARGE_BAND_M): a curtain wall carries nothing, its frame's columns are cut behind it.
    charged_walls: bool = True


# Window glass, whatever the walls are made of: annealed float glass cracks at a blow
# worth a fraction of a metre a second (a pane breaks from a thrown stone or the racking
# of its frame), so it goes long before the wall around it does.
GLASS_BREAK_SPEED = (0.2, 0.3, 0.4, 0.6)

MATERIALS = {
    "concrete": Material("concrete", 2400.0, 0.30, 0.25, (1.0, 3.0, 7.0, 14.0), 0.8, 0.8, 0.05,
                         (0.42, 0.40, 0.37), 0.25),
    # Old masonry walls are thick and weak in tension: they crumble into smaller lumps.
    "masonry": Material("masonry", 1800.0, 0.55, 0.40, (0.8, 2.2, 5.0, 10.0), 0.7, 0.75, 0.05,
                        (0.40, 0.24, 0.17), 0.35,
                        # Crushed old brickwork: the fines come mostly from the weak lime mortar
                        # and plaster (near white), tinted by brick powder (a dull red): a
                        # light tan, warmer than concrete's grey-beige.
                        (206, 182, 160)),
    # A curtain wall: thin glass and mullions on a concrete frame; the glass goes first.
    "glass": Material("glass", 2450.0, 0.12, 0.25, (0.8, 1.5, 3.0, 6.0), 0.8, 0.4, 0.1,
                      (0.20, 0.27, 0.27), 0.10, charged_walls=False),
}
