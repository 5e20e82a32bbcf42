import pytest

from bench.config import TrialConfig, atomic_write_text
from bench.errors import ConfigError


def test_flat_round_trip_keeps_nested_params():
    cfg = TrialConfig(task="xray-heart", seg_loss="dice_ce", seg_loss_params={"ce_weight": 0.5},
                      guidance="soft_mask", guidance_params={"floor": 0.2}, lr=3e-3)
    flat = cfg.flat()
    assert flat["seg_loss_params.ce_weight"] == 0.5 and flat["guidance_params.floor"] == 0.2
    assert TrialConfig.from_flat(flat) == cfg


def test_yaml_round_trip_and_hash_is_stable():
    cfg = TrialConfig(task="xray-heart", guidance_params={"floor": 0.3, "a": 1})
    again = TrialConfig.from_yaml(cfg.to_yaml())
    assert again == cfg and again.config_hash() == cfg.config_hash()
    assert cfg.replace(lr=0.01).config_hash() != cfg.config_hash()


def test_numbers_are_coerced_from_strings_only_when_exact():
    assert TrialConfig(task="t", lr=1).lr == 1.0
    assert TrialConfig(task="t", seg_epochs=3.0).seg_epochs == 3
    with pytest.raises(ConfigError, match="'seg_epochs' must be int"):
        TrialConfig(task="t", seg_epochs=2.5)


def test_unknown_key_names_close_match():
    with pytest.raises(ConfigError, match="did you mean seg_arch"):
        TrialConfig.from_dict({"task": "t", "seg_archh": "unet"})


def test_bad_values_are_rejected():
    with pytest.raises(ConfigError, match="'lr' must be > 0"):
        TrialConfig(task="t", lr=0.0)
    with pytest.raises(ConfigError, match="dotted keys"):
        TrialConfig.from_flat({"task": "t", "bogus.x": 1})


def test_atomic_write_leaves_no_temp_files(tmp_path):
    target = atomic_write_text(tmp_path / "sub" / "f.txt", "hello")
    assert target.read_text() == "hello"
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["f.txt"]
