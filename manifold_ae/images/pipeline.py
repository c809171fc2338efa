"""The one pre/post-processing path from image files to heat maps and scores (T8).

``load -> resize -> model -> residual map -> smoothing -> image score``: :class:`Pipeline` is used by
``evaluate`` (dataset -> metrics), ``predict`` (folder -> heat maps) and by ``train`` (thresholds from
held-out normal training images), so training-time and deployment-time scores cannot drift apart.
This module also builds the model and the data splits from a :class:`~manifold_ae.images.config.Config`, so
``train`` and ``evaluate`` hold out exactly the same normal images.
"""
from __future__ import annotations

import math
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from manifold_ae.anomaly.scoring import image_scores, normalise_levels, pyramid_residuals, residual_map, smooth
from manifold_ae.images.config import CHECKPOINT_NAME, Config, DataConfig, ModelConfig, ScoreConfig
from manifold_ae.images.data.split import seeded_split
from manifold_ae.models.flips import flip_average

__all__ = ["build_model", "PATCH_BANK_SIZE", "patch_bank", "build_objective", "normalize_intensity", "Normalized",
           "Splits", "build_datasets", "Scored", "ScoredSet", "Pipeline", "heat_maps", "residual_levels",
           "ensure_normal_stats", "thresholds_from_normal", "fpr_bound_warning", "threshold_support", "load_checkpoint",
           "resolve_device", "data_label"]


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; other strings are passed to :class:`torch.device`."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but no CUDA device is available; use 'cpu' or 'auto'")
    return torch.device(device)


def build_model(model: ModelConfig, *, channels: int) -> nn.Module:
    """The gated U-Net described by ``model`` for images with ``channels`` channels."""
    from manifold_ae.models.unet import GatedUNet

    return GatedUNet(channels, width=model.width, depth=model.depth, dilations=model.dilations,
                     skips=model.skips, skip_from=model.skip_from, norm=model.norm, sdc_layers=model.sdc_layers,
                     max_width=model.max_width or None, output=model.output)


#: how many training images the patch fill copies from (a seeded choice, the same on every process)
PATCH_BANK_SIZE = 64


def patch_bank(dataset: Dataset, *, size: int | None, seed: int, count: int = PATCH_BANK_SIZE) -> torch.Tensor:
    """``count`` training images (a seeded choice) for the patch fill, as (N, C, H, W) float32.

    With training crops of ``size`` px, each bank image is its top-left ``size`` × ``size`` window, so pasted
    content keeps the training resolution. Every process builds the same bank: a sample's corruption does not
    depend on where it is trained.
    """
    chosen = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:count]
    images = torch.stack([dataset[int(i)]["image"] for i in chosen])   # (N, C, H, W)
    return images if size is None else images[..., :size, :size].contiguous()


def build_objective(config: Config, model: nn.Module, *, bank: torch.Tensor | None = None) -> nn.Module:
    """The training principle: the paper's self-supervised corruption objective or a baseline (T6, T4).

    ``bank`` (N, C, H, W): normal training images for the patch fill (``patch_bank``); None copies from the batch.
    """
    from manifold_ae import objectives

    name = config.objective.name
    if name == "reconstruction":
        return objectives.Reconstruction(model)
    if name == "denoising":
        return objectives.Denoising(model, sigma=config.objective.sigma)
    from manifold_ae.corruptions.image import paper_corruption

    size = config.train.crop or config.data.image_size  # the size of the training batches
    corruption = paper_corruption(image_size=size, channels=config.data.channels,
                                  clean_fraction=config.corruption.clean_fraction,
                                  opacity=tuple(config.corruption.opacity),
                                  mask_weights=config.corruption.mask_weights,
                                  fill_weights=config.corruption.fill_weights, patch_bank=bank,
                                  noise_sigma=config.corruption.noise_sigma,
                                  shade_weight=config.corruption.shade_weight, seed=config.train.seed)
    # ``seed`` makes the texture bank; the training loop seeds the corruption of every sample (sample_seeds)
    weight = config.objective.weight_corrupted or None
    return objectives.SelfSupervised(model, corruption=corruption, weight_corrupted=weight)  # T6


# --------------------------------------------------------------------------------------------------------- data


def normalize_intensity(x: torch.Tensor, *, mode: str, target: float = 0.4) -> torch.Tensor:
    """Per-image gain normalisation: ``x * target / mean(x > 0)``, clipped to [0, 1].

    ``mode="none"`` returns ``x``. The mean is over the non-zero pixels, so letterbox padding does not count.
    Applied on loading, before any corruption, so clean and corrupted training inputs share one value range.

    Parameters
    ----------
    x : (C, H, W) or (B, C, H, W) tensor in [0, 1]
    mode : {"none", "gain"}
    target : float
        Mean intensity of every normalised image (before clipping).
    """
    if mode == "none":
        return x
    if mode != "gain":
        raise ValueError(f"mode must be one of ['none', 'gain'], got {mode!r}")
    dims = tuple(range(x.ndim - 3, x.ndim))  # (C, H, W) axes
    valid = (x > 0).to(x.dtype)
    mean = (x * valid).sum(dim=dims, keepdim=True) / valid.sum(dim=dims, keepdim=True).clamp_min(1.0)
    return (x * (target / mean.clamp_min(1e-3))).clamp(0.0, 1.0)  # same shape as x


class Normalized(Dataset):
    """A dataset of ``{"image", ...}`` items with :func:`normalize_intensity` applied to every image."""

    def __init__(self, dataset: Dataset, *, mode: str, target: float) -> None:
        self.dataset, self.mode, self.target = dataset, mode, target

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.dataset[index])
        item["image"] = normalize_intensity(item["image"], mode=self.mode, target=self.target)  # (C, H, W)
        return item


@dataclass
class Splits:
    """Datasets of one run: normal images to train on, held-out normal images (thresholds only), test set."""

    train: Dataset
    holdout: Dataset | None
    test: Dataset | None


def _holdout_size(num: int, *, fraction: float) -> int:
    """How many of ``num`` normal training images are held out: ``round(fraction * num)``, at least 1 when
    ``fraction > 0``, and at most ``num - 1`` so that training keeps one."""
    if num < 1:
        raise ValueError(f"cannot split an empty set of normal training images (num = {num})")
    return 0 if fraction <= 0 else min(num - 1, max(1, round(fraction * num)))


def data_label(cfg: DataConfig) -> str:
    """The name a run's results are filed under: its own data, never a preset's leftover category.

    ``folder`` and ``magnetic_tile`` runs: the folder name of ``data.root`` (``folder`` adds ``/normal_dir``);
    datasets with categories: ``<dataset>/<category>``.
    """
    if cfg.dataset == "folder":
        return f"{Path(cfg.root).name}/{cfg.normal_dir}" if cfg.normal_dir else Path(cfg.root).name
    if cfg.dataset == "magnetic_tile":
        return Path(cfg.root).name or "magnetic_tile"
    category = cfg.category or (_only_category(cfg.root) if Path(cfg.root).is_dir() else "")
    return f"{cfg.dataset}/{category}" if category else cfg.dataset


def _only_category(root: str) -> str:
    """The single category folder under ``root`` (for the built-in data, whose category name is fixed)."""
    path = Path(root)
    if not path.is_dir():
        raise ValueError(f"data.root = {root!r} is not a directory; expected an MVTec-layout root "
                         "(<root>/<category>/train/good/...)")
    cats = sorted(p.name for p in path.iterdir() if (p / "train").is_dir())
    if len(cats) != 1:
        raise ValueError(f"data.category is empty and data.root = {root!r} holds {len(cats)} categories "
                         f"{cats}; set --data.category=<name>")
    return cats[0]


def build_datasets(cfg: DataConfig) -> Splits:
    """Datasets for ``cfg``: normal training images, held-out normal images, and the test set.

    The held-out normal images (``cfg.holdout_fraction`` of the normal training images, seed
    ``cfg.split_seed``) are never trained on; ``evaluate`` uses them, and only them, to set thresholds.
    With ``cfg.normalize != "none"`` every image is normalised on loading (:func:`normalize_intensity`).
    With ``cfg.empty_masks == "exclude"`` anomalous test images whose mask marks no pixel are left out, counted
    in a warning and in ``test.excluded`` (``data.io.ImageDataset.drop_empty_masks``).
    """
    splits = _build_datasets(cfg)
    if cfg.empty_masks == "exclude" and splits.test is not None:
        splits.test.drop_empty_masks()
    if cfg.normalize == "none":
        return splits

    def wrap(ds: Dataset | None) -> Dataset | None:
        return None if ds is None else Normalized(ds, mode=cfg.normalize, target=cfg.normalize_target)

    return Splits(train=wrap(splits.train), holdout=wrap(splits.holdout), test=wrap(splits.test))


def _build_datasets(cfg: DataConfig) -> Splits:
    common = {"image_size": cfg.image_size, "channels": cfg.channels, "resize_mode": cfg.resize_mode,
              "cache": cfg.cache}
    keep = 1.0 - cfg.test_normal_fraction
    if cfg.dataset == "magnetic_tile":
        from manifold_ae.images.data.folder import magnetic_tile_splits

        mt = magnetic_tile_splits(cfg.root, train_fraction=keep * (1 - cfg.holdout_fraction),
                                  val_fraction=keep * cfg.holdout_fraction, seed=cfg.split_seed, **common)
        return Splits(train=mt.train, holdout=mt.val, test=mt.test)
    if cfg.dataset == "folder":
        return _folder_splits(cfg, common)
    from manifold_ae.images.data.mvtec import MVTecAD

    category = cfg.category or _only_category(cfg.root)
    if cfg.dataset in ("mvtec_ad2", "mvtec_loco"):  # their own validation/good is the held-out set
        from manifold_ae.images.data.mvtec_ad2 import MVTecAD2
        from manifold_ae.images.data.mvtec_loco import MVTecLOCO

        dataset = MVTecAD2 if cfg.dataset == "mvtec_ad2" else MVTecLOCO
        return Splits(train=dataset(cfg.root, category, split="train", **common),
                      holdout=dataset(cfg.root, category, split="validation", **common),
                      test=dataset(cfg.root, category, split="test", **common))
    any_category = cfg.dataset == "synthetic"
    if cfg.dataset == "visa":
        from manifold_ae.images.data.visa import VisA

        normal, test = (VisA(cfg.root, category, split=split, **common) for split in ("train", "test"))
    else:
        normal = MVTecAD(cfg.root, category, split="train", any_category=any_category, **common)
        test = MVTecAD(cfg.root, category, split="test", any_category=any_category, **common)
    n_hold = _holdout_size(len(normal), fraction=cfg.holdout_fraction)
    hold_idx, train_idx = seeded_split(len(normal), sizes=(n_hold,), seed=cfg.split_seed)
    return Splits(train=Subset(normal, train_idx), holdout=Subset(normal, hold_idx) if hold_idx else None,
                  test=test)


def _folder_splits(cfg: DataConfig, common: dict[str, Any]) -> Splits:
    """One seeded split of the normal folder into (test, held-out, train); anomalous folders go to the test set."""
    from manifold_ae.images.data.folder import FolderDataset

    if not cfg.normal_dir:
        raise ValueError("data.normal_dir must name the folder of normal images (below data.root) for "
                         "data.dataset = 'folder'")
    root = Path(cfg.root)
    masks = {"mask_dir": root / cfg.mask_dir if cfg.mask_dir else None, "mask_suffix": cfg.mask_suffix}
    names = [s.image.name for s in FolderDataset(root / cfg.normal_dir, **common).samples]
    n_test = round(cfg.test_normal_fraction * len(names)) if cfg.abnormal_dirs else 0
    n_hold = _holdout_size(len(names) - n_test, fraction=cfg.holdout_fraction)
    test_names, hold_names, train_names = ([names[i] for i in part] for part in
                                           seeded_split(len(names), sizes=(n_test, n_hold), seed=cfg.split_seed))
    train = FolderDataset(root / cfg.normal_dir, files=train_names, **common)
    holdout = FolderDataset(root / cfg.normal_dir, files=hold_names, **common) if hold_names else None
    test = None
    if cfg.abnormal_dirs:
        if not test_names:
            raise ValueError(f"data.test_normal_fraction = {cfg.test_normal_fraction} leaves no normal test image "
                             f"out of {len(names)}; expected a fraction giving at least one")
        abnormal = {Path(d).name: root / d for d in cfg.abnormal_dirs}
        test = FolderDataset(root / cfg.normal_dir, files=test_names, abnormal_dir=abnormal, **masks, **common)
    return Splits(train=train, holdout=holdout, test=test)


# ------------------------------------------------------------------------------------------------------ scoring


@dataclass
class Scored:
    """One batch through the pipeline: all (B, ...) tensors on the CPU, float32."""

    image: torch.Tensor  # (B, C, H, W) model input in [0, 1]
    reconstruction: torch.Tensor  # (B, C, H, W)
    residual: torch.Tensor  # (B, H, W) channel-mean squared residual (T8)
    heatmap: torch.Tensor  # (B, H, W) smoothed residual
    score: torch.Tensor  # (B,) image score


@dataclass
class ScoredSet:
    """A whole dataset through the pipeline; ``masks`` is None for unlabelled images (predict)."""

    heatmaps: torch.Tensor  # (N, H, W)
    scores: torch.Tensor  # (N,)
    paths: list[str]
    labels: torch.Tensor | None = None  # (N,) 0 normal, 1 anomalous
    masks: torch.Tensor | None = None  # (N, H, W) {0, 1}
    defects: list[str] | None = None


class Pipeline:
    """A trained model plus the fixed pre- and post-processing of its inputs and outputs.

    Parameters
    ----------
    model : nn.Module
        Maps images (B, C, H, W) in [0, 1] to reconstructions of the same shape.
    image_size : int
        Images are resized to ``image_size`` x ``image_size`` on loading (``resize_mode``: ``stretch`` or
        ``pad``, exactly as the datasets of ``manifold_ae.images.data`` do).
    channels : int
        1 (grayscale) or 3 (RGB); images are converted on loading.
    score : ScoreConfig
        Smoothing width and image-score reduction.
    device : str or torch.device
        Where the model runs.
    thresholds : dict, optional
        ``{"image": float, "pixel": float}`` from held-out normal images (see :func:`thresholds_from_normal`).
    normalize, normalize_target : str, float
        Per-image intensity normalisation applied by :meth:`load` (as ``data.normalize``).
    normal_stats : dict, optional
        ``{"mean": (S, H, W) tensor, "scales": [...], "sigma": float}``: the mean smoothed residual level of
        normal images per scale, and the scales and smoothing they were fitted with (:meth:`fit_normal_stats`,
        stored in checkpoints); needed when ``score.level_norm`` is not ``none``.
    """

    def __init__(self, model: nn.Module, *, image_size: int, channels: int, score: ScoreConfig,
                 resize_mode: str = "stretch", device: str | torch.device = "cpu",
                 thresholds: dict[str, float] | None = None, normalize: str = "none",
                 normalize_target: float = 0.4, normal_stats: torch.Tensor | None = None) -> None:
        self.normalize, self.normalize_target = normalize, normalize_target
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.image_size = image_size
        self.channels = channels
        self.resize_mode = resize_mode
        self.score_config = score
        self.thresholds = dict(thresholds) if thresholds else {}
        self.normal_stats: torch.Tensor | None = None
        self.normal_stats_key: tuple[Any, ...] | None = None  # (scales, sigma[, flips]) they were fitted for
        if normal_stats is not None:
            self.set_normal_stats(normal_stats)
        self.config: Config | None = None  # set by from_checkpoint
        self.step: int | None = None

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str | torch.device = "auto") -> "Pipeline":
        """Rebuild the model of a training checkpoint (file, or run directory holding ``CHECKPOINT_NAME``)."""
        state = load_checkpoint(path)
        config = Config.from_dict(state["config"], source=f"{path} (stored config)", stored=True)
        model = build_model(config.model, channels=config.data.channels)
        model.load_state_dict(state["model"])
        pipe = cls(model, image_size=config.data.image_size, channels=config.data.channels, score=config.score,
                   resize_mode=config.data.resize_mode, device=device, thresholds=state.get("thresholds"),
                   normalize=config.data.normalize, normalize_target=config.data.normalize_target,
                   normal_stats=state.get("normal_stats"))
        pipe.config = config
        pipe.step = int(state["step"])
        return pipe

    # -------------------------------------------------------------------------------------------- input
    def load(self, paths: Sequence[str | Path]) -> torch.Tensor:
        """Read and resize image files: the same loader the datasets use. Returns (B, C, H, W) in [0, 1]."""
        from manifold_ae.images.data.io import load_image

        images = [load_image(p, channels=self.channels, size=self.image_size, resize_mode=self.resize_mode)
                  for p in paths]
        x = torch.stack(images)  # (B, C, H, W)
        return normalize_intensity(x, mode=self.normalize, target=self.normalize_target)

    # -------------------------------------------------------------------------------------------- model
    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> Scored:
        """Images (B, C, H, W) in [0, 1] -> reconstructions, residual maps, heat maps and image scores."""
        expected = (self.channels, self.image_size, self.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"x must have shape (B, {', '.join(map(str, expected))}) (as loaded by "
                             f"Pipeline.load), got {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()) or float(x.min()) < 0.0 or float(x.max()) > 1.0:
            raise ValueError(f"x must hold finite intensities in [0, 1] (as loaded by Pipeline.load), got values "
                             f"in [{float(x.min()):.3g}, {float(x.max()):.3g}]")
        x = x.to(self.device, torch.float32)
        x_hat = self.reconstruct(x)  # (B, C, H, W)
        r = residual_map(x, x_hat)  # (B, H, W), T8
        sc = self.score_config
        if sc.level_norm != "none" and not self.has_normal_stats():
            raise ValueError(f"score.level_norm = {sc.level_norm!r} needs the normal statistics of score.scales = "
                             f"{list(sc.scales)}; fit them with Pipeline.fit_normal_stats on normal training "
                             "images (train stores them in the checkpoint)")
        stats = None if self.normal_stats is None else self.normal_stats.to(x.device)
        heat = heat_maps(x, x_hat, score=sc, normal_stats=stats)  # (B, H, W)
        s = image_scores(heat, reduction=sc.reduction, topk=sc.topk if sc.reduction == "topk" else None)  # (B,)
        return Scored(x.cpu(), x_hat.float().cpu(), r.float().cpu(), heat.float().cpu(), s.float().cpu())

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The model's reconstruction (B, C, H, W) of images on :attr:`device`, averaged over the flips of
        ``score.flips`` (``models.flips.flip_average``; ``none`` is the model itself)."""
        return flip_average(self.model, x, self.score_config.flips)

    def has_normal_stats(self) -> bool:
        """Whether :attr:`normal_stats` were fitted for the current ``score.scales`` and ``score.sigma``."""
        sc = self.score_config
        return self.normal_stats is not None and self.normal_stats_key == _stats_key(sc)

    def set_normal_stats(self, stats: dict[str, Any]) -> None:
        """Adopt statistics in the checkpoint format of :meth:`normal_stats_record`."""
        missing = [k for k in ("mean", "scales", "sigma") if not isinstance(stats, dict) or k not in stats]
        if missing:
            raise ValueError(f"normal_stats must be a dict with 'mean', 'scales' and 'sigma', lacking {missing}")
        mean, scales = stats["mean"].float().cpu(), tuple(int(s) for s in stats["scales"])
        if tuple(mean.shape) != (len(scales), self.image_size, self.image_size):
            raise ValueError(f"normal_stats['mean'] must have shape ({len(scales)}, {self.image_size}, "
                             f"{self.image_size}) for scales {list(scales)}, got {tuple(mean.shape)}")
        key = (scales, float(stats["sigma"]))
        flips = stats.get("flips", "none")  # checkpoints before score.flips: no flips
        self.normal_stats, self.normal_stats_key = mean, key if flips == "none" else (*key, flips)

    def normal_stats_record(self) -> dict[str, Any]:
        """The fitted statistics as a checkpoint entry: ``{"mean", "scales", "sigma"}``."""
        if self.normal_stats is None or self.normal_stats_key is None:
            raise ValueError("no normal statistics fitted; call fit_normal_stats first")
        key = self.normal_stats_key
        return {"mean": self.normal_stats, "scales": list(key[0]), "sigma": key[1],
                "flips": key[2] if len(key) > 2 else "none"}

    @torch.no_grad()
    def fit_normal_stats(self, dataset: Dataset) -> torch.Tensor:
        """Mean smoothed residual level per scale over the normal images of ``dataset``: (S, H, W), stored in
        :attr:`normal_stats` (and returned). Use normal *training* images, so held-out images stay independent
        for the thresholds."""
        if len(dataset) == 0:  # type: ignore[arg-type]
            raise ValueError("fit_normal_stats needs at least one normal image, got an empty dataset")
        total, count, batch = None, 0, self.score_config.batch_size
        for start in range(0, len(dataset), batch):  # type: ignore[arg-type]
            x = torch.stack([dataset[i]["image"] for i in range(start, min(start + batch, len(dataset)))])
            x = x.to(self.device, torch.float32)
            levels = residual_levels(x, self.reconstruct(x), score=self.score_config).float().sum(dim=0)  # (S, H, W)
            total = levels if total is None else total + levels
            count += x.shape[0]
        sc = self.score_config
        self.normal_stats, self.normal_stats_key = (total / count).cpu(), _stats_key(sc)
        return self.normal_stats

    def score_dataset(self, dataset: Dataset, *, progress: bool = False) -> ScoredSet:
        """Run every item ``{"image", "mask", "label", "defect", "path"}`` of ``dataset`` through the pipeline."""
        batch = self.score_config.batch_size
        heat, scores, masks, labels, defects, paths = [], [], [], [], [], []
        starts: Iterable[int] = range(0, len(dataset), batch)
        if progress:
            from tqdm.auto import tqdm
            starts = tqdm(list(starts), desc="scoring", leave=False)
        for start in starts:
            items = [dataset[i] for i in range(start, min(start + batch, len(dataset)))]
            out = self(torch.stack([it["image"] for it in items]))
            heat.append(out.heatmap)
            scores.append(out.score)
            masks += [it["mask"].reshape(out.heatmap.shape[1:]) for it in items]
            labels += [int(it["label"]) for it in items]
            defects += [str(it["defect"]) for it in items]
            paths += [str(it["path"]) for it in items]
        if not paths:
            raise ValueError("cannot score an empty dataset")
        return ScoredSet(torch.cat(heat), torch.cat(scores), paths, torch.tensor(labels),
                         torch.stack(masks).float(), defects)

    def score_paths(self, paths: Sequence[str | Path]) -> ScoredSet:
        """Load and score image files in batches of ``score.batch_size``."""
        if not paths:
            raise ValueError("paths is empty; expected at least one image file")
        batch = self.score_config.batch_size
        heat, scores = [], []
        for start in range(0, len(paths), batch):
            out = self(self.load(paths[start:start + batch]))
            heat.append(out.heatmap)
            scores.append(out.score)
        return ScoredSet(torch.cat(heat), torch.cat(scores), [str(p) for p in paths])


def _stats_key(sc: ScoreConfig) -> tuple[Any, ...]:
    """What normal statistics depend on: (scales, sigma), and the flips when there are any (older keys stay)."""
    key = (tuple(sc.scales), float(sc.sigma))
    return key if sc.flips == "none" else (*key, sc.flips)


def heat_maps(x: torch.Tensor, x_hat: torch.Tensor, *, score: ScoreConfig,
              normal_stats: torch.Tensor | None = None) -> torch.Tensor:
    """Heat maps (B, H, W) of inputs and reconstructions (B, C, H, W): the one scoring path (T8).

    ``score.scales == [1]`` with ``level_norm = "none"``: the smoothed residual map. Otherwise the smoothed
    residual levels of ``anomaly.scoring.pyramid_residuals``, normalised by ``normal_stats`` (S, H, W) as
    ``score.level_norm`` says (``anomaly.scoring.normalise_levels``), and their pixelwise maximum.
    """
    if tuple(score.scales) == (1,) and score.level_norm == "none":
        return smooth(residual_map(x, x_hat), sigma=score.sigma)
    return normalise_levels(residual_levels(x, x_hat, score=score), norm=score.level_norm, normal_mean=normal_stats)


def residual_levels(x: torch.Tensor, x_hat: torch.Tensor, *, score: ScoreConfig) -> torch.Tensor:
    """Smoothed residual levels (B, S, H, W), one per scale of ``score.scales`` (what the normal statistics of
    :meth:`Pipeline.fit_normal_stats` average and :func:`heat_maps` normalises)."""
    return smooth(pyramid_residuals(x, x_hat, scales=tuple(score.scales)), sigma=score.sigma)


def ensure_normal_stats(pipe: Pipeline, train: Dataset | None) -> bool:
    """Fit ``pipe``'s normal statistics on the first ``score.stats_images`` normal training images when its
    score needs them (``score.level_norm`` not ``none``) and it has none for its ``score.scales``.

    Returns whether it fitted them. ``train`` None (no training split) with statistics needed raises ValueError.
    """
    sc = pipe.score_config
    if sc.level_norm == "none" or pipe.has_normal_stats():
        return False
    if train is None or len(train) == 0:  # type: ignore[arg-type]
        raise ValueError(f"score.level_norm = {sc.level_norm!r} needs normal training images for its statistics, "
                         "and this run has none")
    pipe.fit_normal_stats(Subset(train, range(min(len(train), sc.stats_images))))  # type: ignore[arg-type]
    return True


def thresholds_from_normal(scored: ScoredSet, *, quantile: float, fpr: float = 0.0,
                           confidence: float = 0.9) -> dict[str, Any]:
    """Image and pixel thresholds from held-out normal images' scores and heat-map pixels.

    Only ever called on held-out *normal training* images, never on the test set. Pixel threshold: the
    ``quantile`` of the pixels. Image threshold:

    * ``fpr = 0`` (rule ``quantile``): the ``quantile`` of the image scores. A held-out set too small for it
      (:func:`threshold_support`) gives a warning saying what rate it supports, how many images it needs and how
      confident the false-positive rate bound is.
    * ``fpr > 0`` (rule ``fpr_bound``): the lowest order statistic whose false-positive rate on images like the
      held-out ones is at most ``fpr`` with probability ``confidence`` (``anomaly.metrics.fpr_bound_rank``,
      distribution-free). Too few images for that confidence give the maximum and a warning with the confidence
      it has and the number of images needed.

    Both rules record the held-out image the threshold sits on (``set_by``, the ``k_largest``-th score) and how far
    its score stands apart (``stands_apart``); past :data:`STANDS_APART` they warn and name it (``outlier_warning``):
    one mislabelled or unusual "normal" image can put the threshold above every defect.
    """
    from manifold_ae.anomaly.metrics import threshold_from_normal, threshold_with_fpr_bound

    n = int(scored.scores.numel())
    pixel = threshold_from_normal(scored.heatmaps.flatten(), quantile=quantile)
    if fpr <= 0:
        support = threshold_support(n, quantile=quantile)
        if support["warning"]:
            warnings.warn(support["warning"], stacklevel=2)
        return {"image": threshold_from_normal(scored.scores, quantile=quantile), "pixel": pixel, "rule": "quantile",
                "quantile": float(quantile), "num_images": n, "supported_fpr": support["supported_fpr"],
                "images_needed": support["images_needed"], "k_largest": support["k_largest"],
                "confidence": support["confidence"]} | _set_by(scored, support["k_largest"])
    image, k, prob = threshold_with_fpr_bound(scored.scores, fpr=fpr, confidence=confidence)
    needed = math.ceil(math.log1p(-confidence) / math.log1p(-fpr) - 1e-9)  # the max reaches it from here on
    warning = fpr_bound_warning(n, fpr=fpr, confidence=confidence, achieved=prob, needed=needed)
    if warning:
        warnings.warn(warning, stacklevel=2)
    return {"image": image, "pixel": pixel, "rule": "fpr_bound", "quantile": float(quantile), "fpr": float(fpr),
            "requested_confidence": float(confidence), "confidence": prob, "k_largest": k, "num_images": n,
            "supported_fpr": 1.0 / n, "images_needed": needed} | _set_by(scored, k)


#: a threshold image whose gap to the next score is this many times the spread of the upper half beneath it
STANDS_APART = 3.0


def _set_by(scored: ScoredSet, k: int) -> dict[str, Any]:
    """Which held-out image's score the image threshold sits on (the ``k``-th largest), and a warning naming it
    when that score stands apart from the rest (``anomaly.metrics.stands_apart`` > :data:`STANDS_APART`)."""
    from manifold_ae.anomaly.metrics import stands_apart, stands_apart_false_alarm

    found = stands_apart(scored.scores, k)
    if found is None:
        return {}
    ratio, index = found
    out = {"set_by": scored.paths[index], "stands_apart": ratio}
    if ratio > STANDS_APART:
        n = int(scored.scores.numel())
        out["outlier_warning"] = (
            f"the image threshold is set by one held-out normal image, {scored.paths[index]}: its score stands apart "
            f"from the others (gap to the next score {ratio:.3g} times the spread of the upper half below it; "
            f"exponential-tailed normal scores do this with probability "
            f"{stands_apart_false_alarm(n, k, STANDS_APART):.2g}). Look at it: if it is not a normal image, remove it "
            "from the normal images and train or evaluate again; if it is normal, the threshold is valid, but every "
            "defect scoring below it will pass")
        warnings.warn(out["outlier_warning"], stacklevel=3)
    return out


def fpr_bound_warning(n: int, *, fpr: float, confidence: float, achieved: float, needed: int) -> str | None:
    """The warning of an ``fpr_bound`` image threshold whose held-out set is too small, or None."""
    if achieved >= confidence:
        return None
    return (f"{n} held-out normal images cannot bound the image false-positive rate by {fpr:.3g} with confidence "
            f"{confidence:.3g} (score.threshold_fpr, score.threshold_confidence): even their largest score gives "
            f"P(FPR <= {fpr:.3g}) = {achieved:.3g}; that needs at least {needed} held-out normal images (raise "
            "data.holdout_fraction or add normal images)")


def threshold_support(n: int, *, quantile: float) -> dict[str, Any]:
    """What a threshold at the ``quantile`` of ``n`` held-out normal image scores can promise.

    The requested false-positive rate is ``alpha = 1 - quantile``; it is supported when ``n >= 1 / alpha``
    (``images_needed = ceil(1 / alpha)``), and the smallest rate ``n`` images resolve is ``1 / n``. The
    interpolated quantile is at least the ``k``-th largest score, ``k = n - floor(quantile * (n - 1))``; for
    continuous scores the true false-positive rate at the ``k``-th largest of ``n`` normals is Beta(k, n - k + 1),
    so ``P(FPR <= alpha) >= P(Binomial(n, alpha) >= k)`` (``confidence``).

    Returns
    -------
    dict with ``supported_fpr``, ``images_needed``, ``k_largest``, ``confidence`` and ``warning`` (None when
    supported).
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive number of held-out normal images, got {n!r}")
    if not 0.0 <= quantile < 1.0:
        raise ValueError(f"quantile must be in [0, 1), got {quantile!r}")
    alpha = 1.0 - quantile
    needed = math.ceil(1.0 / alpha - 1e-9)
    k = n - math.floor(quantile * (n - 1))
    below = sum(math.comb(n, i) * alpha ** i * (1 - alpha) ** (n - i) for i in range(k))
    confidence = max(0.0, 1.0 - below)
    warning = None
    if n < needed:
        warning = (f"{n} held-out normal images cannot support the false-positive rate {alpha:.3g} "
                   f"(score.threshold_quantile = {quantile}): they resolve rates down to 1/{n} = {1 / n:.3g}, "
                   f"and {alpha:.3g} needs at least {needed} held-out normal images (raise data.holdout_fraction "
                   f"or add normal images); the threshold is at or above the k-th largest of the {n} scores "
                   f"(k = {k}), so "
                   f"P(FPR <= {alpha:.3g}) is only {confidence:.3g}")
    return {"supported_fpr": 1.0 / n, "images_needed": needed, "k_largest": k, "confidence": confidence,
            "warning": warning}


def _what_file(path: Path, err: Exception) -> str:
    """What a file that ``torch.load`` refused is, in words (torch's own advice would be about unpickling)."""
    head = path.read_bytes()[:8]
    kinds = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"BM": "a BMP image",
             b"{": "a JSON/text file", b"PK": "a zip archive"}
    kind = next((name for magic, name in kinds.items() if head.startswith(magic)), None)
    if kind == "a zip archive":
        if isinstance(err, pickle.UnpicklingError):
            return ("it is a PyTorch file holding objects other than tensors and plain containers, so it was not "
                    "written by manifold-ae train")
        return "it is a PyTorch (zip) file that is truncated or damaged"
    return f"it is {kind}, not a PyTorch checkpoint" if kind else f"it is not a PyTorch checkpoint (starts {head!r})"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint (file or run directory) on the CPU, with ``weights_only`` unpickling."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist; expected a {CHECKPOINT_NAME} written by manifold-ae "
                         "train, or its run directory")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or foreign files
        raise ValueError(f"checkpoint {path} could not be read: {_what_file(path, err)}; expected a "
                         f"{CHECKPOINT_NAME} written by manifold-ae train (or its run directory)") from None
    missing = [k for k in ("model", "config", "step") if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"checkpoint {path} lacks the entries {missing}; expected a manifold-ae checkpoint")
    return state
