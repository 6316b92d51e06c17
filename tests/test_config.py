import json

import pytest

from gradviz.config import CELLS, LIMITS, ConfigError, RunConfig, structural_change


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


def test_text_task_needs_a_file():
    with pytest.raises(ConfigError) as err:
        RunConfig(task="text").validate()
    assert err.value.field == "text_file"


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
