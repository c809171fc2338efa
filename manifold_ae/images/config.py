"""Typed run configuration: frozen dataclasses, TOML presets and checked ``--key=value`` overrides.

A :class:`Config` is composed of one frozen dataclass per concern (data, model, objective, corruption,
training, scoring). It is built from a preset (``manifold_ae/images/presets/<name>.toml``, a ``.toml`` file or a
saved ``config.json``) plus command-line overrides such as ``--train.lr=3e-4`` or ``--steps=200`` (a bare key
is accepted when exactly one section has it). Every value is checked against its field's type; an unknown key
is reported together with the closest known keys. The resolved config is written beside every run
(``config.toml`` and ``config.json``) and stored inside every checkpoint (``Config.to_dict``), the run
directory's ``CHECKPOINT_NAME``.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from manifold_ae.checks import check_choice, check_fraction, check_int, check_positive
from manifold_ae.files import write_json, write_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["DataConfig", "ModelConfig", "ObjectiveConfig", "CorruptionConfig", "TrainConfig", "ScoreConfig",
           "Config", "PRESET_DIR", "DATASETS", "OBJECTIVES", "list_presets", "load_config", "apply_overrides",
           "parse_overrides", "to_toml", "save_config", "describe_keys", "CHECKPOINT_NAME", "PRECISIONS",
           "RENAMED_KEYS"]

PRESET_DIR = Path(__file__).with_name("presets")
DATASETS = ("synthetic", "mvtec", "folder", "magnetic_tile", "visa", "mvtec_ad2", "mvtec_loco")
OBJECTIVES = ("selfsupervised", "reconstruction", "denoising")
PRECISIONS = ("auto", "native", "bf16", "float32")
#: the checkpoint file of a run directory (``manifold-ae train`` writes it; evaluate, predict, compare read it)
CHECKPOINT_NAME = "checkpoint.pt"
#: keys that no longer exist -> what replaced them (a config naming one is refused with this message)
RENAMED_KEYS = {
    "train.bf16": 'train.precision = "auto" | "native" | "bf16" | "float32", one setting for whatever device runs '
                  '("auto": bf16 on CUDA, float32 on a CPU); e.g. --train.precision=float32',
    "train.cpu_bf16": 'train.precision = "auto" | "native" | "bf16" | "float32", one setting for whatever device runs '
                      '("bf16": bf16 autocast on a CPU too); e.g. --train.precision=bf16',
}


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are prepared.

    ``dataset``: ``synthetic`` (the built-in data, generated into ``root`` on first use), ``mvtec`` (MVTec AD
    layout, ``root``/``category``), ``magnetic_tile`` (``root`` = the folder holding ``MT_Free``, ``MT_<Class>``)
    or ``folder`` (``normal_dir`` and ``abnormal_dirs`` below ``root``, masks beside each anomalous image or in
    ``mask_dir``, named ``<stem><mask_suffix>.png``). For ``folder`` and ``magnetic_tile`` a seeded
    ``test_normal_fraction`` of the normal images goes to the test set. ``holdout_fraction`` of the remaining
    normal training images (seed ``split_seed``) is held out of training and used only to set thresholds.
    ``visa`` (``root`` holds ``split_csv/1cls.csv``; held out like ``mvtec``), ``mvtec_ad2`` and ``mvtec_loco``
    (``root``/``category``; their ``validation/good`` is the held-out set, ``holdout_fraction`` is not used).
    ``normalize``: ``none``, or ``gain``: every image, when loaded and before any corruption, is multiplied so
    that the mean of its non-zero pixels is ``normalize_target``, then clipped to [0, 1] (for illumination that
    varies from image to image; ``pipeline.normalize_intensity``).
    ``empty_masks``: an anomalous test image whose mask marks no pixel is an ``error`` (default) or, with
    ``exclude``, left out of the test set, counted (``data.io.ImageDataset.drop_empty_masks``; docs/own-data.md).
    """

    dataset: str = "synthetic"
    root: str = "runs/data/synthetic"
    category: str = "weave"
    image_size: int = 128
    channels: int = 3
    resize_mode: str = "stretch"
    cache: bool = False
    holdout_fraction: float = 0.1
    test_normal_fraction: float = 0.2
    split_seed: int = 0
    normal_dir: str = ""
    abnormal_dirs: tuple[str, ...] = ()
    mask_dir: str = ""
    mask_suffix: str = ""
    num_workers: int = 0
    pin_memory: bool = True
    normalize: str = "none"
    normalize_target: float = 0.4
    empty_masks: str = "error"

    def __post_init__(self) -> None:
        check_choice(self.dataset, "data.dataset", DATASETS)
        check_choice(self.normalize, "data.normalize", ("none", "gain"))
        check_choice(self.empty_masks, "data.empty_masks", ("error", "exclude"))
        check_fraction(self.normalize_target, "data.normalize_target", low_inclusive=False)
        check_int(self.image_size, "data.image_size", minimum=16)
        check_choice(self.channels, "data.channels", (1, 3))
        check_choice(self.resize_mode, "data.resize_mode", ("stretch", "pad"))
        check_fraction(self.holdout_fraction, "data.holdout_fraction", high=1.0, high_inclusive=False)
        check_fraction(self.test_normal_fraction, "data.test_normal_fraction", high=1.0, high_inclusive=False)
        check_int(self.num_workers, "data.num_workers", minimum=0)


@dataclass(frozen=True)
class ModelConfig:
    """The gated U-Net of the paper (``skips=False``: the same network without skip connections).

    ``max_width = 0`` means the model's default cap (``8 * width``); see
    :class:`~manifold_ae.models.unet.GatedUNet` for the meaning of every field.
    """

    width: int = 32
    depth: int = 4
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    skips: bool = True
    skip_from: int = 0
    norm: str = "group"
    sdc_layers: int = 2
    max_width: int = 0
    output: str = "sigmoid"

    def __post_init__(self) -> None:
        check_int(self.width, "model.width", minimum=1)
        check_int(self.depth, "model.depth", minimum=1, maximum=8)
        check_int(self.sdc_layers, "model.sdc_layers", minimum=0)
        check_int(self.skip_from, "model.skip_from", minimum=0, maximum=self.depth - 1)
        check_int(self.max_width, "model.max_width", minimum=0)
        check_choice(self.norm, "model.norm", ("group", "batch", "none"))
        check_choice(self.output, "model.output", ("sigmoid", "linear"))
        if not self.dilations:
            raise ValueError("model.dilations must be a non-empty list of positive integers, got ()")
        for i, d in enumerate(self.dilations):
            check_int(d, f"model.dilations[{i}]", minimum=1)


@dataclass(frozen=True)
class ObjectiveConfig:
    """Which principle is trained: the paper's ``selfsupervised`` corruption objective or a baseline.

    ``sigma`` is the noise level of the ``denoising`` baseline (images in [0, 1]); ``weight_corrupted``, when
    positive, is passed to :class:`~manifold_ae.objectives.SelfSupervised` to weight corrupted pixels.
    """

    name: str = "selfsupervised"
    sigma: float = 0.1
    weight_corrupted: float = 0.0

    def __post_init__(self) -> None:
        check_choice(self.name, "objective.name", OBJECTIVES)
        check_positive(self.sigma, "objective.sigma")
        check_positive(self.weight_corrupted, "objective.weight_corrupted", allow_zero=True)


def _recipe_default(kind: str) -> dict[str, float]:
    """The paper recipe's weights, from the one table in ``corruptions.image``."""
    from manifold_ae.corruptions.image import FILL_WEIGHTS, MASK_WEIGHTS

    return dict(MASK_WEIGHTS if kind == "mask" else FILL_WEIGHTS)


@dataclass(frozen=True)
class CorruptionConfig:
    """Training corruptions of the ``selfsupervised`` objective (passed to ``paper_corruption``).

    ``clean_fraction`` of the training samples stay uncorrupted; ``opacity`` is the blending interval.
    ``mask_weights`` are the relative weights of the masks by name (perlin, blob, rectangle, line, crack, smooth) and
    ``fill_weights`` those of the fills (patch, texture, noise, elastic, color); a name left out keeps the paper
    recipe's weight (``corruptions.image.MASK_WEIGHTS`` / ``FILL_WEIGHTS``), 0 removes the option. In TOML
    ``mask_weights = {crack = 0.25}``, on the command line ``--corruption.mask_weights.crack=0.25``.
    ``noise_sigma`` > 0 adds Gaussian noise of that standard deviation to every training input on top of the
    occlusions, with the clean image as the target (the Filtering Autoencoder; docs/theory.md).
    ``shade_weight`` in [0, 1] is the fraction of the samples given a shading corruption instead of the recipe:
    the image's own texture under a smooth gain field and a contrast change (``ShadeFill``), blended in through a
    large soft mask (``SmoothMask``), i.e. large faint regions with no edge (docs/results.md).
    """

    clean_fraction: float = 0.1
    opacity: tuple[float, ...] = (0.5, 1.0)
    mask_weights: dict[str, float] = field(default_factory=lambda: _recipe_default("mask"))
    fill_weights: dict[str, float] = field(default_factory=lambda: _recipe_default("fill"))
    noise_sigma: float = 0.0
    shade_weight: float = 0.0

    def __post_init__(self) -> None:
        from manifold_ae.corruptions.image import FILL_WEIGHTS, MASK_WEIGHTS, recipe_weights

        check_fraction(self.clean_fraction, "corruption.clean_fraction")
        check_fraction(self.shade_weight, "corruption.shade_weight")
        check_positive(self.noise_sigma, "corruption.noise_sigma", allow_zero=True)
        # completed with the recipe's weights, in the recipe's order (a frozen dataclass: set once, here)
        object.__setattr__(self, "mask_weights", recipe_weights(self.mask_weights, MASK_WEIGHTS,
                                                                "corruption.mask_weights"))
        object.__setattr__(self, "fill_weights", recipe_weights(self.fill_weights, FILL_WEIGHTS,
                                                                "corruption.fill_weights"))
        if len(self.opacity) != 2 or self.opacity[0] > self.opacity[1]:
            raise ValueError(f"corruption.opacity must be an interval [low, high] with low <= high, "
                             f"got {self.opacity!r}")
        for i, a in enumerate(self.opacity):
            check_fraction(a, f"corruption.opacity[{i}]")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, precision, checkpointing and output.

    ``batch_size`` is the global batch: with K processes each takes ``batch_size / K``. ``device`` is
    ``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda``. ``precision`` applies to whatever device runs:
    ``bf16`` runs the forward pass under bf16 autocast, ``float32`` does not, ``auto`` is bf16 on CUDA and
    float32 on a CPU, ``native`` is bf16 where the hardware computes it (CUDA, or a CPU with AVX512-BF16 or AMX)
    and float32 elsewhere. On a CPU bf16 gives 1.3x the training throughput when the CPU has native bf16
    (``docs/training.md``) and is emulated and 16-25x slower without (``train`` warns), hence not the CPU's
    ``auto``; the CPU presets use ``native``. ``channels_last`` applies to the model and batches on every device. ``compile`` wraps
    the model in ``torch.compile``. ``crop > 0`` trains on random
    ``crop`` x ``crop`` windows of the ``data.image_size`` images (one per image and step; the fully
    convolutional model still scores whole images), so a higher resolution costs no more per step.
    ``flips`` replaces each training image by a uniformly drawn element of a flip group (``none``, ``h``,
    ``hv`` as ``score.flips``, ``models.flips``), before the corruption: augmentation that makes the normal
    training distribution closed under the group. ``gain_jitter`` in [0, 1) multiplies each training image by a
    gain drawn uniformly from [1 − gain_jitter, 1 + gain_jitter] (clipped to [0, 1]) after the flips and before the
    corruption, so that the images' mean intensity, which ``data.normalize = "gain"`` makes a constant, varies.
    Only for models that can see the global gain (``model.norm`` ``batch`` or ``none``): with ``group`` after the
    bias-free first convolution the U-Net is exactly gain-invariant, and jitter only raises its loss floor
    (docs/results.md).
    """

    steps: int = 1000
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 50
    clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False
    checkpoint_every: int = 200
    log_every: int = 10
    out_dir: str = "runs/train"
    crop: int = 0
    flips: str = "none"
    gain_jitter: float = 0.0

    def __post_init__(self) -> None:
        from manifold_ae.models.flips import FLIPS

        check_choice(self.flips, "train.flips", FLIPS)
        check_fraction(self.gain_jitter, "train.gain_jitter", high_inclusive=False)
        check_int(self.steps, "train.steps", minimum=1)
        check_int(self.batch_size, "train.batch_size", minimum=1)
        check_positive(self.lr, "train.lr")
        check_positive(self.weight_decay, "train.weight_decay", allow_zero=True)
        check_int(self.warmup, "train.warmup", minimum=0)
        check_positive(self.clip, "train.clip", allow_zero=True)
        check_int(self.seed, "train.seed", minimum=0)
        check_choice(self.device, "train.device", ("auto", "cpu", "cuda"))
        check_choice(self.precision, "train.precision", PRECISIONS)
        check_int(self.checkpoint_every, "train.checkpoint_every", minimum=1)
        check_int(self.log_every, "train.log_every", minimum=1)


@dataclass(frozen=True)
class ScoreConfig:
    """Post-processing of residual maps into heat maps and image scores (T8).

    ``sigma`` is the Gaussian smoothing width in pixels at ``data.image_size``; ``reduction`` is ``max`` or
    ``topk`` (mean of the ``topk`` largest pixels); thresholds are the ``threshold_quantile`` of the
    held-out normal images' scores (image level) and pixels (pixel level).
    ``scales`` compares input and reconstruction at several resolutions (s × s local means,
    ``anomaly.scoring.pyramid_residuals``; ``[1]`` is the plain residual) and ``level_norm`` puts the levels on
    one scale before their pixelwise maximum: ``none``, ``level`` (each level over its mean on normal images) or
    ``pixel`` (over the per-pixel normal mean shrunk halfway to the level's mean). The normal statistics come
    from the first ``stats_images`` normal *training* images (so the held-out images stay independent for the
    thresholds) and are stored in the checkpoint.
    ``threshold_fpr`` > 0 replaces the image threshold's quantile by a bound: the lowest held-out score at which
    the false-positive rate is at most ``threshold_fpr`` with probability ``threshold_confidence``
    (distribution-free, ``images.pipeline.thresholds_from_normal``); 0 keeps the quantile.
    ``flips`` averages the reconstruction over a group of image flips before the residual is taken
    (``models.flips.flip_average``: ``none``, ``h`` = left-right mirror, ``hv`` = both mirrors; 1, 2, 4 passes).
    """

    sigma: float = 2.0
    reduction: str = "max"
    topk: int = 50
    threshold_quantile: float = 0.99
    batch_size: int = 16
    scales: tuple[int, ...] = (1,)
    level_norm: str = "none"
    stats_images: int = 64
    threshold_fpr: float = 0.0
    threshold_confidence: float = 0.9
    flips: str = "none"

    def __post_init__(self) -> None:
        from manifold_ae.anomaly.scoring import LEVEL_NORMS
        from manifold_ae.models.flips import FLIPS

        check_positive(self.sigma, "score.sigma", allow_zero=True)
        check_choice(self.reduction, "score.reduction", ("max", "topk"))
        check_choice(self.level_norm, "score.level_norm", LEVEL_NORMS)
        check_choice(self.flips, "score.flips", FLIPS)
        check_int(self.stats_images, "score.stats_images", minimum=1)
        check_fraction(self.threshold_fpr, "score.threshold_fpr", high_inclusive=False)
        check_fraction(self.threshold_confidence, "score.threshold_confidence", low_inclusive=False,
                       high_inclusive=False)
        if not self.scales or len(set(self.scales)) != len(self.scales):
            raise ValueError(f"score.scales must be a non-empty list of distinct ints >= 1, got {self.scales!r}")
        for i, s in enumerate(self.scales):
            check_int(s, f"score.scales[{i}]", minimum=1)
        check_int(self.topk, "score.topk", minimum=1)
        check_fraction(self.threshold_quantile, "score.threshold_quantile")
        check_int(self.batch_size, "score.batch_size", minimum=1)


@dataclass(frozen=True)
class Config:
    """A whole run: one section per concern; ``preset`` records where it started from."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    corruption: CorruptionConfig = field(default_factory=CorruptionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    preset: str = ""

    def __post_init__(self) -> None:
        factor = 2 ** self.model.depth
        if self.data.image_size % factor:
            raise ValueError(f"data.image_size = {self.data.image_size} must be divisible by 2**model.depth = "
                             f"{factor} (model.depth = {self.model.depth})")
        crop = check_int(self.train.crop, "train.crop", minimum=0)
        if crop > self.data.image_size:
            raise ValueError(f"train.crop = {crop} must not exceed data.image_size = {self.data.image_size}")
        if crop % factor:
            raise ValueError(f"train.crop = {crop} must be 0 (whole images) or divisible by 2**model.depth = "
                             f"{factor} (model.depth = {self.model.depth})")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples become lists), the inverse of :meth:`from_dict`."""
        out: dict[str, Any] = {"preset": self.preset}
        for name in _SECTIONS:
            section = getattr(self, name)
            out[name] = {f.name: _plain(getattr(section, f.name)) for f in dataclasses.fields(section)}
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str = "config", stored: bool = False) -> "Config":
        """Build a config from a (possibly partial) nested dict, checking every key and value type.

        A key of :data:`RENAMED_KEYS` is refused, naming its replacement. ``stored=True`` (the config inside a
        checkpoint) translates the keys of older checkpoints instead, so they still load.
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"{source}: expected a table of sections, got {d!r}")
        if stored:
            d = _upgrade_stored(d)
        unknown = [k for k in d if k not in _SECTIONS and k != "preset"]
        if unknown:
            raise ValueError(f"{source}: unknown section(s) {unknown}; expected some of "
                             f"{list(_SECTIONS) + ['preset']}{_suggest(unknown[0], list(_SECTIONS))}")
        kwargs: dict[str, Any] = {"preset": str(d.get("preset", ""))}
        for name, section_cls in _SECTIONS.items():
            values = d.get(name, {})
            if not isinstance(values, Mapping):
                raise ValueError(f"{source}: [{name}] must be a table of keys, got {values!r}")
            hints = _field_types(section_cls)
            checked = {}
            for key, value in values.items():
                if f"{name}.{key}" in RENAMED_KEYS:
                    raise ValueError(f"{source}: {name}.{key} no longer exists; it was replaced by "
                                     f"{RENAMED_KEYS[f'{name}.{key}']}")
                if key not in hints:
                    raise ValueError(f"{source}: unknown key {name}.{key}{_suggest(key, list(hints), name)}")
                checked[key] = _coerce(value, hints[key], f"{name}.{key}", source=source)
            kwargs[name] = section_cls(**checked)
        return cls(**kwargs)

    def replace(self, **sections: Any) -> "Config":
        """Return a copy with whole sections (or ``preset``) replaced."""
        return dataclasses.replace(self, **sections)


_SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "objective": ObjectiveConfig,
                              "corruption": CorruptionConfig, "train": TrainConfig, "score": ScoreConfig}


def _upgrade_stored(d: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint's config in today's keys: ``train.bf16``/``cpu_bf16`` become ``train.precision``, the
    positional weight lists of ``corruption`` become tables by name (the lists predate the names added since,
    so a shorter list names the first entries)."""
    from manifold_ae.corruptions.image import FILL_WEIGHTS, MASK_WEIGHTS

    d = {k: dict(v) if isinstance(v, Mapping) else v for k, v in d.items()}
    train = d.get("train", {})
    if "bf16" in train or "cpu_bf16" in train:
        cuda_bf16, cpu_bf16 = bool(train.pop("bf16", True)), bool(train.pop("cpu_bf16", False))
        train["precision"] = "bf16" if cpu_bf16 else "auto" if cuda_bf16 else "float32"
    corruption = d.get("corruption", {})
    for key, names in (("mask_weights", MASK_WEIGHTS), ("fill_weights", FILL_WEIGHTS)):
        if isinstance(corruption.get(key), (list, tuple)) and 0 < len(corruption[key]) <= len(names):
            corruption[key] = dict(zip(names, corruption[key]))
    return d


def _field_types(section_cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(section_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(section_cls)}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    return list(value) if isinstance(value, tuple) else value


def _suggest(key: str, known: list[str], section: str | None = None) -> str:
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
    prefix = f"{section}." if section else ""
    if close:
        return f"; did you mean {', '.join(prefix + c for c in close)}?"
    return f"; known keys: {', '.join(prefix + k for k in known)}"


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is tuple:
        return f"list of {typing.get_args(tp)[0].__name__}"
    if typing.get_origin(tp) is dict:
        return f"table of {typing.get_args(tp)[1].__name__} by name"
    return tp.__name__


def _coerce(value: Any, tp: Any, key: str, *, source: str) -> Any:
    """Check ``value`` (from TOML/JSON, already typed) against the field type ``tp``."""
    where = f"{source}: {key}"
    if typing.get_origin(tp) is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"{where} = {value!r} has the wrong type; expected a {_type_name(tp)}, e.g. "
                             f"{key} = {{name = 0.25}} in TOML or --{key}.name=0.25")
        item_tp = typing.get_args(tp)[1]
        return {str(k): _coerce(v, item_tp, f"{key}.{k}", source=source) for k, v in value.items()}
    if typing.get_origin(tp) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where} = {value!r} has the wrong type; expected a {_type_name(tp)}")
        item_tp = typing.get_args(tp)[0]
        return tuple(_coerce(v, item_tp, f"{key}[{i}]", source=source) for i, v in enumerate(value))
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ValueError(f"{where} = {value!r} has the wrong type; expected {_type_name(tp)}")


# ---------------------------------------------------------------------------------------- command-line overrides

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _parse_scalar(text: str, tp: Any, key: str) -> Any:
    def bad() -> ValueError:
        return ValueError(f"override --{key}={text!r}: cannot read {text!r} as {_type_name(tp)}")

    if tp is bool:
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise bad()
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise bad() from None
    if tp is float:
        try:
            v = float(text)
        except ValueError:
            raise bad() from None
        return v
    return text


def _parse_value(text: str, tp: Any, key: str) -> Any:
    if typing.get_origin(tp) is tuple:
        item_tp = typing.get_args(tp)[0]
        stripped = text.strip().strip("[]()")
        if not stripped:
            return ()
        try:
            return tuple(_parse_scalar(part.strip(), item_tp, key) for part in stripped.split(","))
        except ValueError:
            raise ValueError(f"override --{key}={text!r}: cannot read {text!r} as a comma-separated "
                             f"{_type_name(tp)}") from None
    return _parse_scalar(text, tp, key)


def _join_spaced(overrides: Sequence[str]) -> list[str]:
    """Accept the shell habit ``--data.root /path`` as ``--data.root=/path`` (a value never starts with --)."""
    items, i = [], 0
    while i < len(overrides):
        item = overrides[i]
        if item.startswith("--") and "=" not in item and i + 1 < len(overrides) \
                and not overrides[i + 1].startswith("--"):
            items.append(f"{item}={overrides[i + 1]}")
            i += 2
        else:
            items.append(item)
            i += 1
    return items


def parse_overrides(overrides: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Turn ``["--train.lr=3e-4", "--steps=20"]`` into ``{"train": {"lr": 3e-4}, ...}`` with typed values.

    A bare key (``--steps``) is resolved to the single section that has it; keys found in several sections
    must be qualified. Raises ValueError naming the key, the value and the expected type.
    """
    out: dict[str, dict[str, Any]] = {}
    all_keys = [f"{s}.{k}" for s, c in _SECTIONS.items() for k in _field_types(c)]
    for item in _join_spaced(overrides):
        if not item.startswith("--") or "=" not in item:
            raise ValueError(f"override {item!r} must look like --key=value or --section.key=value")
        key, text = item[2:].split("=", 1)
        if key in RENAMED_KEYS or f"train.{key}" in RENAMED_KEYS:
            old = key if key in RENAMED_KEYS else f"train.{key}"
            raise ValueError(f"override --{key}: {old} no longer exists; it was replaced by {RENAMED_KEYS[old]}")
        entry = ""  # the name inside a table field: --corruption.mask_weights.crack=0.25
        if key.count(".") >= 2 or ("." in key and key.split(".", 1)[0] not in _SECTIONS):
            key, entry = key.rsplit(".", 1)
        if "." in key:
            section, name = key.split(".", 1)
            if section not in _SECTIONS:
                raise ValueError(f"override --{key}: unknown section {section!r}"
                                 f"{_suggest(section, list(_SECTIONS))}")
            hints = _field_types(_SECTIONS[section])
            if name not in hints:
                raise ValueError(f"override --{key}: unknown key {key!r}{_suggest(name, list(hints), section)}")
        else:
            owners = [s for s, c in _SECTIONS.items() if key in _field_types(c)]
            if not owners:
                raise ValueError(f"override --{key}: unknown key {key!r}"
                                 f"{_suggest(key, all_keys + [k.split('.')[1] for k in all_keys])}")
            if len(owners) > 1:
                raise ValueError(f"override --{key}: ambiguous key {key!r}, found in sections {owners}; "
                                 f"write one of {', '.join(f'--{s}.{key}' for s in owners)}")
            section, name = owners[0], key
            key = f"{section}.{name}"
        tp = _field_types(_SECTIONS[section])[name]
        if typing.get_origin(tp) is dict:
            if not entry:
                names = list(getattr(_SECTIONS[section](), name))
                raise ValueError(f"override --{key}={text!r}: {key} is a {_type_name(tp)} over {names}; set one "
                                 f"entry with --{key}.NAME=VALUE, e.g. --{key}.{names[-1]}=0.25")
            out.setdefault(section, {}).setdefault(name, {})[entry] = _parse_scalar(
                text, typing.get_args(tp)[1], f"{key}.{entry}")
        elif entry:
            raise ValueError(f"override --{key}.{entry}: unknown key {f'{key}.{entry}'!r}; {key} is of type "
                             f"{_type_name(tp)}, not a table")
        else:
            out.setdefault(section, {})[name] = _parse_value(text, tp, key)
    return out


def apply_overrides(config: Config, overrides: Sequence[str]) -> Config:
    """Return ``config`` with the command-line ``overrides`` applied (and re-validated)."""
    parsed = parse_overrides(overrides)
    d = config.to_dict()
    for section, values in parsed.items():
        for k, v in values.items():  # a table field takes the named entries, keeping the others
            d[section][k] = {**d[section][k], **v} if isinstance(v, dict) else _plain(v)
    return Config.from_dict(d, source="overrides")


# ---------------------------------------------------------------------------------------------- files and presets


def list_presets() -> list[str]:
    """Names of the bundled presets (``manifold_ae/images/presets/*.toml``)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def _read_file(path: Path) -> dict[str, Any]:
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text(encoding="utf-8"))
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a valid {path.suffix[1:].upper()} file ({err})") from err


def load_config(preset: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load a preset (bundled name, ``.toml`` or ``.json`` path; None = defaults) and apply ``overrides``."""
    if preset is None or preset == "":
        config = Config()
    else:
        path = Path(preset)
        if path.suffix not in {".toml", ".json"}:
            path = PRESET_DIR / f"{preset}.toml"
            if not path.is_file():
                raise ValueError(f"unknown preset {str(preset)!r} (no file {path}); expected one of "
                                 f"{list_presets()} or a path to a .toml/.json config"
                                 f"{_suggest(str(preset), list_presets())}")
        elif not path.is_file():
            raise ValueError(f"config file {path} does not exist; expected a .toml or .json config file")
        d = _read_file(path)
        d.setdefault("preset", path.stem)
        config = Config.from_dict(d, source=str(path))
    return apply_overrides(config, overrides) if overrides else config


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):  # a TOML basic string: escape backslash, quote and control characters
        return '"' + "".join(f"\\u{ord(ch):04x}" if ord(ch) < 0x20 or ord(ch) == 0x7F
                             else "\\" + ch if ch in '"\\' else ch for ch in value) + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):  # an inline table; the names are bare keys (letters, digits, _ and -)
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} to TOML")


def to_toml(config: Config) -> str:
    """The config as TOML text that :func:`load_config` reads back to an equal config."""
    d = config.to_dict()
    lines = [f"preset = {_toml_value(d['preset'])}"]
    for section in _SECTIONS:
        lines += ["", f"[{section}]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in d[section].items()]
    return "\n".join(lines) + "\n"


def save_config(config: Config, directory: str | Path) -> None:
    """Write ``config.toml`` and ``config.json`` into ``directory`` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_text(directory / "config.toml", to_toml(config))
    write_json(directory / "config.json", config.to_dict())


def describe_keys() -> str:
    """Every config key with its type and default, one line each, grouped by section (for ``--help``)."""
    lines = []
    for section, section_cls in _SECTIONS.items():
        lines.append(f"[{section}]")
        defaults = section_cls()
        hints = _field_types(section_cls)
        for f in dataclasses.fields(section_cls):
            default = _toml_value(_plain(getattr(defaults, f.name)))
            lines.append(f"  --{section + '.' + f.name:<28} {_type_name(hints[f.name]):<23} default {default}")
    return "\n".join(lines)
