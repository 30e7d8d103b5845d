import pytest

from derrumbe.errors import DerrumbeError
from derrumbe.spec import ShotSpec, output_size


def test_spec_round_trips_toml_to_object_to_toml():
    spec = ShotSpec(plate="/tmp/p.jpg", box=[1, 2, 300, 400], style="topple", direction="left", height_m=31.5,
                    material="glass", pieces=900, seed=42, size="1280", preview=True)
    text = spec.to_toml()
    again = ShotSpec.from_toml(text)
    assert again == spec
    assert again.to_toml() == text


def test_spec_rejects_unknown_fields_and_bad_values():
    with pytest.raises(DerrumbeError, match="unknown field"):
        ShotSpec.from_dict({"plate": "x", "explode": True})
    with pytest.raises(DerrumbeError, match="--fps"):
        ShotSpec(plate="x", box=[0, 0, 5, 5], fps=0).validate()
    with pytest.raises(DerrumbeError, match="--style"):
        ShotSpec(plate="x", box=[0, 0, 5, 5], style="melt").validate()


def test_output_size_keeps_plate_aspect_and_refuses_mismatch():
    assert output_size(ShotSpec(plate="x", size="640"), 1280, 720) == (640, 360)
    assert output_size(ShotSpec(plate="x", preview=True), 957, 798)[0] == 640
    w, h = output_size(ShotSpec(plate="x", size="640"), 957, 798)
    assert abs((w / h) / (957 / 798) - 1) < 0.01
    with pytest.raises(DerrumbeError, match="aspect"):
        output_size(ShotSpec(plate="x", size="640x640"), 1280, 720)


def test_a_panorama_is_refused_not_squashed():
    from derrumbe.stages.plate import check_plate_size
    with pytest.raises(DerrumbeError, match="aspect"):
        check_plate_size(20000, 100)
    with pytest.raises(DerrumbeError, match="px tall"):
        output_size(ShotSpec(plate="x", preview=True), 20000, 300)


def test_every_field_has_a_finite_range_or_a_length_cap():
    """One table, checked in one place: no number without a range, no text without a cap."""
    import dataclasses
    import typing
    from derrumbe.spec import check_field
    hints = typing.get_type_hints(ShotSpec)
    for f in dataclasses.fields(ShotSpec):
        m = f.metadata
        base = next((a for a in typing.get_args(hints[f.name]) if a is not type(None)), hints[f.name])
        if base in (int, float):
            assert m["lo"] is not None and m["hi"] is not None, f.name
            with pytest.raises(DerrumbeError, match=f.name.replace("_", "-")):
                check_field(f.name, m["hi"] * 10 + 1 if m["hi"] > 0 else 1e300)
            with pytest.raises(DerrumbeError):
                check_field(f.name, float("inf"))
        elif base is str:
            with pytest.raises(DerrumbeError, match="characters"):
                check_field(f.name, "x" * 5000)
        elif typing.get_origin(base) is list:
            assert m["items"], f.name
            with pytest.raises(DerrumbeError, match=f.name.replace("_", "-")):
                check_field(f.name, [float("inf")] * len(m["items"]))
