"""The holdouts stage's cues: one module per kind of thing that stands in front of a
building, each finding it by its own evidence (a shipped detector, geometry, colour
against the facade) and handing on bool masks (cutout.Found) that holdouts.py merges,
softens and places in depth. They import nothing from holdouts.py."""
