import dataclasses
import json

import pytest

from gradviz.config import (CELLS, GROUPS, LIMITS, LIVE_FIELDS, OPTIMIZERS, TASKS, ConfigError,
                            RunConfig, Setting, setting, settings, structural_change)
from gradviz import registry


def test_defaults_are_valid_and_round_trip_through_json():
    cfg = RunConfig(cell="gru", rho=0.9, bidirectional=True)
    again = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


@pytest.mark.parametrize("field,value,needle", [
    ("cell", "transformer", "allowed: " + ", ".join(CELLS)),
    ("seq_len", 0, "allowed: 1 to 5000"),
    ("hidden", 2.5, "must be an integer"),
    ("layers", 5, "allowed: 1 to 4"),
    ("clip_threshold", 0.0, "out of range"),
    ("lr", float("nan"), "finite number"),
    ("rho", -1.0, "out of range"),
    ("bidirectional", "yes", "true or false"),
    ("seed", -1, "allowed: 0 to 2147483647"),
])
def test_invalid_values_name_the_field_and_what_is_allowed(field, value, needle):
    with pytest.raises(ConfigError) as err:
        RunConfig(**{field: value}).validate()
    assert err.value.field == field
    assert needle in str(err.value)


def test_text_task_without_a_file_is_valid():
    # No file named: the text task reads its built-in text (tests/test_texts.py).
    config = RunConfig(task="text").validate()
    assert config.text_file is None


def test_from_dict_rejects_unknown_keys_and_wrong_types():
    with pytest.raises(ConfigError, match="unknown setting"):
        RunConfig.from_dict({"cel": "lstm"})
    with pytest.raises(ConfigError, match="JSON object"):
        RunConfig.from_dict(["lstm"])
    with pytest.raises(ConfigError):
        RunConfig.from_dict({"hidden": "32"})
    # JSON writes 32 and 32.0 alike; both mean the integer.
    assert RunConfig.from_dict({"hidden": 32.0}).hidden == 32


def test_limits_cover_every_numeric_field():
    numeric = {n for n, v in RunConfig().to_dict().items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)} | {"rho"}
    assert numeric <= set(LIMITS)


def test_structural_change():
    a = RunConfig()
    assert not structural_change(a, a.replace(lr=0.1, clip="norm", clip_threshold=2.0))
    assert structural_change(a, a.replace(cell="gru"))
    assert structural_change(a, a.replace(hidden=64))


def test_every_field_is_declared_with_a_setting():
    names = [f.name for f in dataclasses.fields(RunConfig)]
    assert [name for name, _ in settings()] == names
    for f in dataclasses.fields(RunConfig):
        assert any(isinstance(v, Setting) for v in f.metadata.values()), \
            f"RunConfig.{f.name} needs setting(…): a label, help text and group"
    for name, s in settings():
        assert s.name == name and s.default == getattr(RunConfig(), name)
        assert s.label.strip() and s.help.strip() and not s.help.endswith("."), name
        assert s.group in GROUPS, name
        if s.value_type in (int, float):
            assert s.limits is not None and s.limits[0] < s.limits[1], name
            assert s.optional or s.limits[0] <= s.default <= s.limits[1], name
        else:
            assert s.limits is None, name
    assert set(GROUPS) == {s.group for _, s in settings() if s.shown}


def test_setting_refuses_an_unknown_group():
    with pytest.raises(ValueError, match="unknown group 'Misc'"):
        setting(1, label="x", help="y", group="Misc")


def test_names_come_from_the_registry_and_nothing_else_is_allowed():
    assert (CELLS, TASKS, OPTIMIZERS) == tuple(tuple(t) for t in (
        registry.CELLS, registry.TASKS, registry.OPTIMIZERS))
    for name, table in registry.CHOICES.items():
        assert dict(settings())[name].choices is table
        for value in table:
            config = RunConfig(**{name: value}, text_file="any.txt")
            assert config.validate() is config
        for wrong in ("nonsense", 3, None, ["lstm"]):
            with pytest.raises(ConfigError) as err:
                RunConfig(**{name: wrong}).validate()
            assert str(err.value) == f"{name}: unknown value {wrong!r}; allowed: " \
                                     f"{', '.join(table)}"


def test_limits_bound_every_number_at_both_ends():
    assert LIMITS == {name: s.limits for name, s in settings() if s.limits}
    for name, (lo, hi) in LIMITS.items():
        kind = dict(settings())[name].value_type
        assert RunConfig(**{name: kind(lo)}).validate() and RunConfig(**{name: kind(hi)}).validate()
        step = 1 if kind is int else max(abs(lo), abs(hi), 1) * 1e-3
        for outside in (kind(lo - step), kind(hi + step)):
            with pytest.raises(ConfigError) as err:
                RunConfig(**{name: outside}).validate()
            assert str(err.value).startswith(f"{name}: {outside!r} is out of range; allowed: ")


def test_live_fields_are_the_settings_marked_live():
    assert LIVE_FIELDS == {"clip", "clip_threshold", "lr", "momentum", "capture_every"}
    assert LIVE_FIELDS == {name for name, s in settings() if s.live}


def test_every_setting_shows_its_limits_at_its_decimals():
    # A spin box rounds to its decimals: a lower limit it cannot show would read as 0 (or
    # -0) and let the panel send a value outside the limits.
    for name, s in settings():
        if s.limits is None or s.log_scale or s.value_type is not float:
            continue
        for limit in s.limits:
            assert round(limit, s.decimals) == limit, (name, limit, s.decimals)
