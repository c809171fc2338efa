"""Config: presets, round trips (dict, TOML, JSON), checked overrides and their error messages."""
from __future__ import annotations

import dataclasses
import json
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manifold_ae.images.config import (Config, CorruptionConfig, DataConfig, ModelConfig, TrainConfig, apply_overrides,
                                       describe_keys, list_presets, load_config, parse_overrides, save_config, to_toml)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_every_bundled_preset_loads_and_names_itself():
    names = list_presets()
    assert {"quick", "magnetic_tile", "magnetic_tile_gpu", "mvtec"} <= set(names)
    for name in names:
        cfg = load_config(name)
        assert cfg.preset == name
        assert cfg.data.image_size % 2 ** cfg.model.depth == 0


def test_quick_preset_is_small_cpu_and_mvtec_is_gpu():
    quick, mvtec = load_config("quick"), load_config("mvtec")
    assert quick.data.dataset == "synthetic" and 64 <= quick.data.image_size <= 128
    assert quick.train.device == "auto"
    assert mvtec.train.device == "cuda" and mvtec.data.image_size == 256 and mvtec.train.precision == "bf16"
    assert quick.train.precision == "auto" and load_config("magnetic_tile").train.precision == "native"


def test_dict_toml_and_json_round_trip_give_equal_configs(tmp_path):
    cfg = load_config("quick", ["--train.lr=3e-4", "--model.dilations=1,3", "--data.abnormal_dirs=a,b",
                                "--train.precision=float32", "--corruption.mask_weights.crack=0.2"])
    assert Config.from_dict(cfg.to_dict()) == cfg
    assert Config.from_dict(tomllib.loads(to_toml(cfg))) == cfg
    save_config(cfg, tmp_path)
    assert load_config(tmp_path / "config.toml") == cfg
    assert load_config(tmp_path / "config.json") == cfg
    assert json.loads((tmp_path / "config.json").read_text())["train"]["lr"] == 3e-4


@settings(max_examples=25, deadline=None)
@given(lr=st.floats(1e-8, 10.0, allow_nan=False), steps=st.integers(1, 10**7),
       dilations=st.lists(st.integers(1, 64), min_size=1, max_size=6), precision=st.sampled_from(["auto", "native", "bf16",
                                                                                                  "float32"]),
       crack=st.floats(0.0, 10.0, allow_nan=False),
       root=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20))
def test_toml_round_trip_property(lr, steps, dilations, precision, crack, root):
    cfg = Config(data=DataConfig(root=root), model=ModelConfig(dilations=tuple(dilations)),
                 train=TrainConfig(lr=lr, steps=steps, precision=precision),
                 corruption=CorruptionConfig(mask_weights={"crack": crack}))
    assert Config.from_dict(tomllib.loads(to_toml(cfg))) == cfg


def test_overrides_are_typed_and_bare_keys_resolve_to_their_section():
    parsed = parse_overrides(["--steps=7", "--train.lr=1e-2", "--skips=no", "--dilations=[1, 2]",
                              "--data.root=a=b"])
    assert parsed == {"train": {"steps": 7, "lr": 0.01}, "model": {"skips": False, "dilations": (1, 2)},
                      "data": {"root": "a=b"}}
    cfg = apply_overrides(Config(), ["--steps=7", "--clip=0"])
    assert cfg.train.steps == 7 and cfg.train.clip == 0.0 and isinstance(cfg.train.clip, float)


def test_space_separated_overrides_read_like_equals_signs():
    assert parse_overrides(["--data.root", "/x/mvtec", "--train.steps", "5", "--skips=no"]) == \
        {"data": {"root": "/x/mvtec"}, "train": {"steps": 5}, "model": {"skips": False}}


@pytest.mark.parametrize("override, words", [
    (["--train.steps=ten"], ["train.steps", "'ten'", "int"]),
    (["--train.lr=fast"], ["train.lr", "'fast'", "float"]),
    (["--train.channels_last=maybe"], ["train.channels_last", "'maybe'", "bool"]),
    (["--train.bf16=false"], ["train.bf16 no longer exists", "train.precision", '"auto" | "native" | "bf16" | "float32"']),
    (["--cpu_bf16=true"], ["train.cpu_bf16 no longer exists", "--train.precision=bf16"]),
    (["--corruption.mask_weights=1,1"], ["corruption.mask_weights", "table of float by name", "perlin",
                                         "--corruption.mask_weights.NAME=VALUE"]),
    (["--corruption.mask_weights.crak=1"], ["unknown option name(s) ['crak']", "did you mean 'crack'"]),
    (["--train.steps.x=1"], ["train.steps.x", "not a table"]),
    (["--model.dilations=1,x"], ["model.dilations", "'1,x'", "list of int"]),
    (["--stpes=3"], ["stpes", "did you mean", "steps"]),
    (["--trian.lr=1"], ["trian", "did you mean", "train"]),
    (["--train.lrr=1"], ["train.lrr", "did you mean", "train.lr"]),
    (["--sigma=1"], ["ambiguous", "--objective.sigma", "--score.sigma"]),
    (["train.lr=1"], ["train.lr=1", "--key=value"]),
    (["--train.lr"], ["--key=value"]),
])
def test_bad_overrides_name_key_value_and_expectation(override, words):
    with pytest.raises(ValueError) as err:
        apply_overrides(Config(), override)
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("override, words", [
    (["--train.lr=-1"], ["train.lr", "> 0", "-1"]),
    (["--train.steps=0"], ["train.steps", "0"]),
    (["--data.dataset=imagenet"], ["data.dataset", "imagenet", "mvtec"]),
    (["--objective.name=vae"], ["objective.name", "vae", "selfsupervised"]),
    (["--data.image_size=100"], ["data.image_size", "100", "divisible", "model.depth"]),
    (["--corruption.opacity=0.9,0.1"], ["corruption.opacity", "low <= high"]),
    (["--data.holdout_fraction=1.0"], ["data.holdout_fraction", "1.0"]),
    (["--corruption.fill_weights.color=-1"], ["corruption.fill_weights['color']", ">= 0", "-1"]),
    (["--train.precision=fp16"], ["train.precision", "fp16", "bf16"]),
    (["--model.skip_from=4"], ["model.skip_from", "[0, 3]", "4"]),
    (["--train.crop=100"], ["train.crop", "100", "divisible", "16"]),
    (["--train.crop=512"], ["train.crop", "512", "data.image_size = 128"]),
])
def test_out_of_range_values_are_rejected_with_the_field_name(override, words):
    with pytest.raises(ValueError) as err:
        apply_overrides(Config(), override)
    for word in words:
        assert word in str(err.value)


def test_bad_files_and_unknown_keys_in_files(tmp_path):
    with pytest.raises(ValueError, match=r"unknown preset 'quik'.*did you mean quick"):
        load_config("quik")
    with pytest.raises(ValueError, match=r"does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nsteps = 'many'\n")
    with pytest.raises(ValueError, match=r"bad.toml: train.steps = 'many' has the wrong type; expected int"):
        load_config(bad)
    bad.write_text("[trainn]\nsteps = 3\n")
    with pytest.raises(ValueError, match=r"unknown section.*trainn.*did you mean train"):
        load_config(bad)
    bad.write_text("[model]\nwidht = 3\n")
    with pytest.raises(ValueError, match=r"unknown key model.widht; did you mean model.width"):
        load_config(bad)
    bad.write_text("[model\n")
    with pytest.raises(ValueError, match=r"bad.toml: not a valid TOML file"):
        load_config(bad)
    bad.write_text("[train]\ncompile = 1\n")  # an int is not a bool
    with pytest.raises(ValueError, match=r"train.compile = 1 has the wrong type; expected bool"):
        load_config(bad)
    bad.write_text("[train]\nbf16 = true\n")
    with pytest.raises(ValueError, match=r"bad.toml: train.bf16 no longer exists; it was replaced by train.precision"):
        load_config(bad)
    bad.write_text("[corruption]\nmask_weights = [0.4, 0.3, 0.15, 0.15, 0.0]\n")  # the old positional list
    with pytest.raises(ValueError, match=r"mask_weights = \[.*\] has the wrong type; expected a table of float"):
        load_config(bad)


def test_config_is_frozen():
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.train.steps = 3  # type: ignore[misc]


def test_named_weights_merge_over_the_preset_and_the_recipe(tmp_path):
    preset = tmp_path / "p.toml"
    preset.write_text("[corruption]\nmask_weights = {perlin = 0.5}\n")
    cfg = load_config(preset, ["--corruption.mask_weights.crack=0.25", "--mask_weights.line=0"])
    assert cfg.corruption.mask_weights == {"perlin": 0.5, "blob": 0.3, "rectangle": 0.15, "line": 0.0, "crack": 0.25,
                                           "smooth": 0.0}
    assert cfg.corruption.fill_weights == {"patch": 0.3, "texture": 0.25, "noise": 0.15, "elastic": 0.15,
                                           "color": 0.15}


def test_a_checkpoint_config_with_the_old_keys_still_loads():
    old = {"train": {"bf16": True, "cpu_bf16": True}, "corruption": {"mask_weights": [0, 0, 0, 0, 1]}}
    cfg = Config.from_dict(old, stored=True)
    assert cfg.train.precision == "bf16"
    assert cfg.corruption.mask_weights == {"perlin": 0.0, "blob": 0.0, "rectangle": 0.0, "line": 0.0, "crack": 1.0,
                                           "smooth": 0.0}
    for bf16, cpu_bf16, precision in [(True, False, "auto"), (False, False, "float32"), (False, True, "bf16")]:
        stored = {"train": {"bf16": bf16, "cpu_bf16": cpu_bf16}}
        assert Config.from_dict(stored, stored=True).train.precision == precision
    with pytest.raises(ValueError, match=r"train.bf16 no longer exists"):
        Config.from_dict({"train": {"bf16": True}})


def test_help_lists_every_key_with_type_and_default(capsys):
    from manifold_ae.commands.train import main

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for section, section_cls in [("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig),
                                 ("corruption", CorruptionConfig)]:
        for f in dataclasses.fields(section_cls):
            assert f"--{section}.{f.name} " in out, (section, f.name)
    lines = {line.split()[0]: line for line in describe_keys().splitlines() if line.startswith("  --")}
    assert len(lines) == sum(len(dataclasses.fields(c)) for c in (Config().data, Config().model, Config().objective,
                                                                 Config().corruption, Config().train, Config().score))
    assert lines["--train.steps"].split()[1:] == ["int", "default", "1000"]
    assert lines["--train.precision"].split()[1:] == ["str", "default", '"auto"']
    assert lines["--model.dilations"].split()[1:] == ["list", "of", "int", "default", "[1,", "2,", "4,", "8,", "16,",
                                                      "32]"]
    assert "table of float by name" in lines["--corruption.mask_weights"] and "crack = 0.0" in lines[
        "--corruption.mask_weights"]


def test_shade_weight_is_a_fraction_named_in_its_error():
    assert load_config("magnetic_tile", ["--corruption.shade_weight=0.2"]).corruption.shade_weight == 0.2
    assert load_config("magnetic_tile").corruption.shade_weight == 0.0
    with pytest.raises(ValueError, match=r"corruption\.shade_weight"):
        load_config("magnetic_tile", ["--corruption.shade_weight=1.5"])
