"""Train the image model: one loop you can read from top to bottom (nanoGPT style, but importable and typed).

Single process (CPU or one GPU)::

    manifold-ae train --preset quick
    python -m manifold_ae.commands.train --preset magnetic_tile --train.steps=3000 --out runs/mt

Several processes, one per GPU (or CPU processes with gloo), on one or several nodes::

    torchrun --standalone --nproc_per_node=4 -m manifold_ae.commands.train --preset mvtec --data.category=bottle
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 \\
        -m manifold_ae.commands.train --preset mvtec --data.category=bottle

A run directory holds ``config.toml``/``config.json``, ``log.jsonl`` and ``CHECKPOINT_NAME`` (model, optimizer,
scheduler, every rank's RNG states, step, config; rewritten atomically every ``train.checkpoint_every`` steps
and at the end, when the held-out normal images' thresholds are added). ``--resume`` continues from it and
ends with exactly the weights of an uninterrupted run (deterministic CPU). The self-supervised corruptions are
seeded per sample (run seed, step, position in the global batch), so K processes train like one.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import io
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from manifold_ae.images.config import (CHECKPOINT_NAME, Config, describe_keys, load_config, parse_overrides,
                                       save_config)
from manifold_ae.loop import (check_finite, cosine_schedule, random_crop, random_flip, random_gain, sample_seeds,
                              train_step)
from manifold_ae.commands.check_data import checked_datasets
from manifold_ae.images.pipeline import (PATCH_BANK_SIZE, Pipeline, build_model, build_objective,
                                         ensure_normal_stats, load_checkpoint, patch_bank, resolve_device,
                                         thresholds_from_normal)
from manifold_ae.files import atomic_write, require_free_space

__all__ = ["main", "train", "build_objective", "patch_bank", "PATCH_BANK_SIZE", "save_checkpoint", "Distributed",
           "setup_distributed", "autocast_dtype", "RESUMABLE_KEYS", "CHECKPOINT_NAME"]

#: settings a resumed run may change; everything else must match the checkpoint's config
RESUMABLE_KEYS = frozenset({"train.steps", "train.checkpoint_every", "train.log_every", "train.compile",
                            "data.num_workers", "data.pin_memory", "data.root", "train.out_dir"})


# ---------------------------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job (world_size = 1 without torchrun)."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_master(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: str = "auto") -> Distributed:
    """Join the process group described by torchrun's env vars (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_*).

    NCCL on CUDA, gloo on CPU. Without those variables this is a single process and nothing is initialised.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if world_size > 1:
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", rank=rank,
                                world_size=world_size)
    return Distributed(rank, local_rank, world_size, dev)


def teardown_distributed(ctx: Distributed) -> None:
    """Leave the process group while the interpreter is fully alive.

    The DDP wrapper of a finished run can sit in a reference cycle that holds the gloo process group; if it is
    only collected at interpreter exit, gloo's worker threads are destroyed unjoined and the rank aborts
    ("terminate called without an active exception", about 1 run in 30 here). So collect first, then destroy,
    then collect what the group held.
    """
    if ctx.enabled and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
        gc.collect()


def native_cpu_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool | None:
    """Whether this CPU computes bf16 natively (avx512_bf16 or amx_bf16 among the ``cpuinfo`` flags); None when
    the file cannot be read (not Linux)."""
    try:
        flags = Path(cpuinfo).read_text()
    except OSError:
        return None
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The forward pass's autocast dtype for ``train.precision`` on ``device``: ``bf16`` -> bfloat16 on every
    device, ``float32`` -> None (no autocast), ``auto`` -> bfloat16 on CUDA and None on a CPU, ``native`` ->
    bfloat16 on CUDA and on a CPU with native bf16 (:func:`native_cpu_bf16`), None on any other CPU."""
    if precision == "bf16" or (precision in ("auto", "native") and device.type == "cuda"):
        return torch.bfloat16
    if precision == "native" and device.type == "cpu" and native_cpu_bf16():
        return torch.bfloat16
    return None


# ---------------------------------------------------------------------------------------------- checkpoints


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` with ``torch.save`` to a temporary file beside ``path``, then ``os.replace`` it.

    A reader sees either the previous checkpoint or the complete new one, never a partial file, whatever
    interrupts the write (the temporary file is removed on errors). The state is serialised in memory first, so a
    full disk surfaces as the operating system's error on the file (``files.OutputError``, one line from the
    CLI), not as torch's internal writer assertion.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, lambda handle: handle.write(buffer.getbuffer()), binary=True)


def checkpoint_bytes(model: nn.Module) -> int:
    """An upper estimate of one checkpoint's size: the weights and AdamW's two moments, plus 1 MiB of the rest."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return 3 * weights + 2**20


def _rng_state() -> dict[str, Any]:
    """This process's RNG states in a form ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "python": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------------------------------ data


class _ResumableSampler(DistributedSampler):
    """``DistributedSampler`` that can start part-way into an epoch (exact mid-epoch resume)."""

    def __init__(self, dataset: Dataset, *, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.skip = 0

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.skip:])

    def __len__(self) -> int:
        return self.num_samples - self.skip


def _resolve_config(preset: str | None, overrides: Sequence[str], *, resume: bool) -> tuple[Config, dict | None]:
    """The run's config and, with ``--resume`` and an existing checkpoint, that checkpoint."""
    config = _expand_out_dir(load_config(preset, overrides))
    path = Path(config.train.out_dir) / CHECKPOINT_NAME
    if not (resume and path.is_file()):
        return config, None
    state = load_checkpoint(path)
    stored = Config.from_dict(state["config"], source=f"{path} (stored config)", stored=True)
    if preset and config.preset != stored.preset:
        raise ValueError(f"--resume: {path} was trained from preset {stored.preset!r}, not {config.preset!r}; "
                         "resume with the same preset (or none)")
    for section, values in parse_overrides(overrides).items():
        for key, value in values.items():
            name = f"{section}.{key}"
            old = getattr(getattr(stored, section), key)
            if name not in RESUMABLE_KEYS and value != old:
                raise ValueError(f"--resume: cannot change {name} (checkpoint {path} has {old!r}, got {value!r}); "
                                 f"a resumed run may change only {sorted(RESUMABLE_KEYS)}")
    from manifold_ae.images.config import apply_overrides

    return _expand_out_dir(apply_overrides(stored, overrides)), state


def _expand_out_dir(config: Config) -> Config:
    """Fill a ``{category}`` placeholder in ``train.out_dir`` (e.g. ``runs/mvtec/{category}``)."""
    out = config.train.out_dir.replace("{category}", config.data.category or "all")
    return config.replace(train=dataclasses.replace(config.train, out_dir=out))


# ------------------------------------------------------------------------------------------------------ loop


def train(config: Config, *, checkpoint: dict[str, Any] | None = None, progress: bool = True,
          ctx: Distributed | None = None) -> dict[str, Any]:
    """Train ``config`` (continuing ``checkpoint`` when given); returns a summary dict (master's view).

    Call inside a process group (``ctx`` from :func:`setup_distributed`) or alone (``ctx=None``).
    """
    ctx = ctx or Distributed(0, 0, 1, resolve_device(config.train.device))
    tc, dc = config.train, config.data
    out_dir = Path(tc.out_dir)
    device = ctx.device
    if tc.batch_size % ctx.world_size:
        raise ValueError(f"train.batch_size = {tc.batch_size} (the global batch) must be divisible by the number "
                         f"of processes ({ctx.world_size})")
    batch = tc.batch_size // ctx.world_size  # per-rank batch

    # ---- data: the built-in data is written once (rank 0), everyone else waits at the barrier
    if dc.dataset == "synthetic" and ctx.is_master and not (Path(dc.root) / dc.category).is_dir():
        from manifold_ae.images.data.synthetic import make_synthetic
        make_synthetic(dc.root, categories=[dc.category or "weave"])  # native 128 px, resized on loading
    if ctx.enabled:
        dist.barrier()
    splits = checked_datasets(dc)  # every image and mask read once: all problems listed before the first step
    if len(splits.train) < tc.batch_size:
        raise ValueError(f"train.batch_size = {tc.batch_size} exceeds the {len(splits.train)} normal training "
                         f"images of {dc.root!r}; lower the batch size")
    sampler = _ResumableSampler(splits.train, num_replicas=ctx.world_size, rank=ctx.rank, seed=tc.seed)
    # the loader draws worker seeds from its own generator (reseeded per epoch), never from the global RNG
    # that the crop offsets use, so where an epoch's iterator is created cannot shift that stream
    loader_gen = torch.Generator()
    loader = DataLoader(splits.train, batch_size=batch, sampler=sampler, drop_last=True,
                        num_workers=dc.num_workers, pin_memory=dc.pin_memory and device.type == "cuda",
                        persistent_workers=dc.num_workers > 0, generator=loader_gen)
    batches_per_epoch = len(sampler) // batch

    # ---- model, objective, optimizer (identical initial weights on every rank: one seed)
    _seed_everything(tc.seed)
    model = build_model(config.model, channels=dc.channels).to(device)
    memory_format = torch.channels_last if tc.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    forward_model = torch.compile(model) if tc.compile else model
    bank = None
    if config.objective.name == "selfsupervised":
        bank = patch_bank(splits.train, size=tc.crop or None, seed=tc.seed)
    objective = build_objective(config, forward_model, bank=bank).to(device)
    params = [p for p in objective.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    scheduler = cosine_schedule(optimizer, steps=tc.steps, warmup=min(tc.warmup, tc.steps - 1))
    if ctx.is_master:   # the checkpoint and its temporary copy must fit, before the first step
        require_free_space(out_dir, 2 * checkpoint_bytes(model), what="a checkpoint and its temporary copy")
    step = 0
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        step = int(checkpoint["step"])
    wrapped: nn.Module = objective
    if ctx.enabled:
        wrapped = nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None)

    # ---- per-rank randomness (crop offsets, flips): restored exactly on resume with the same world size. The
    # corruptions do not use it: each sample's corruption is seeded from (seed, step, its global position)
    _seed_everything(tc.seed + 1_000_003 * (ctx.rank + 1))
    if checkpoint is not None:
        states = checkpoint.get("rng", [])
        if len(states) == ctx.world_size:
            _set_rng_state(states[ctx.rank])
        else:  # a different number of processes: continue with fresh per-rank seeds derived from the step
            _seed_everything(tc.seed + 1_000_003 * (ctx.rank + 1) + step)
    autocast = autocast_dtype(tc.precision, device)
    if autocast is not None and device.type == "cpu" and ctx.is_master and native_cpu_bf16() is False:
        print(f"manifold-ae train: warning: train.precision = {tc.precision!r} runs bf16 on this CPU, which has no "
              "native bf16 (no avx512_bf16 or amx_bf16 flag), so bf16 autocast is emulated and slower than "
              "float32 (16-25x slower, measured on an AVX2-only AMD EPYC); pass --train.precision=float32 or "
              "native", file=sys.stderr)
    from manifold_ae.objectives import SelfSupervised

    seeded = isinstance(objective, SelfSupervised)  # corrupts: one seed per sample and step

    # ---- master-only I/O
    if ctx.is_master:
        save_config(config, out_dir)
    log_file = open(out_dir / "log.jsonl", "a", encoding="utf-8") if ctx.is_master else None
    bar = None
    if ctx.is_master and progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=tc.steps, initial=step, desc=f"train {config.preset or ''}".strip(), dynamic_ncols=True)

    def log(record: dict[str, Any]) -> None:
        if log_file is not None:
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()

    def checkpoint_now(final: bool) -> None:
        rng = [_rng_state()]
        if ctx.enabled:  # every rank's RNG, so each resumes its own stream
            rng = [None] * ctx.world_size
            dist.all_gather_object(rng, _rng_state())
        if ctx.is_master:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "step": step, "config": config.to_dict(),
                     "rng": rng, "world_size": ctx.world_size, "version": 1}
            if final and splits.holdout is not None:  # thresholds from held-out normal images only
                pipe = Pipeline(model, image_size=dc.image_size, channels=dc.channels, score=config.score,
                                resize_mode=dc.resize_mode, device=device)
                if ensure_normal_stats(pipe, splits.train):  # from training images: the held-out stay independent
                    state["normal_stats"] = pipe.normal_stats_record()
                state["thresholds"] = thresholds_from_normal(pipe.score_dataset(splits.holdout),
                                                             quantile=config.score.threshold_quantile,
                                                             fpr=config.score.threshold_fpr,
                                                             confidence=config.score.threshold_confidence)
                model.train()
            save_checkpoint(state, out_dir / CHECKPOINT_NAME)
        if ctx.enabled:
            dist.barrier()

    log({"event": "resume" if checkpoint is not None else "start", "step": step, "world_size": ctx.world_size,
         "device": str(device), "train_images": len(splits.train), "per_rank_batch": batch})
    start_time, start_step, loss = time.perf_counter(), step, float("nan")
    epoch, skip = divmod(step, batches_per_epoch)
    try:
        while step < tc.steps:
            sampler.set_epoch(epoch)
            sampler.skip = skip * batch
            skip = 0
            loader_gen.manual_seed(tc.seed + 7919 * epoch + 104_729 * ctx.rank)
            for item in loader:
                x = item["image"].to(device, non_blocking=True)  # (B, C, H, W) in [0, 1]
                if tc.crop:
                    x = random_crop(x, tc.crop)  # (B, C, crop, crop)
                x = random_flip(x, tc.flips)  # the same per-rank RNG stream as the crops; none: x itself
                x = random_gain(x, tc.gain_jitter)  # the same stream again; 0: x itself, nothing drawn
                x = x.contiguous(memory_format=memory_format)
                # sample i of this rank is sample i * K + rank of the global batch (DistributedSampler's order)
                seeds = sample_seeds(seed=tc.seed, step=step, positions=range(ctx.rank, tc.batch_size,
                                                                             ctx.world_size)) if seeded else None
                loss = train_step(wrapped, x, optimizer, clip=tc.clip or None, autocast_dtype=autocast, seeds=seeds)
                scheduler.step()
                step += 1
                if step % tc.log_every == 0 or step == tc.steps:
                    mean_loss = loss.to(torch.float64).reshape(1)  # the only host sync of the step, at log steps
                    if ctx.enabled:  # the global-batch loss: mean over ranks of equal per-rank batches
                        dist.all_reduce(mean_loss)
                        mean_loss /= ctx.world_size
                    check_finite(float(mean_loss), step=step)
                    elapsed = time.perf_counter() - start_time
                    log({"step": step, "epoch": epoch, "loss": float(mean_loss), "lr": scheduler.get_last_lr()[0],
                         "images_per_s": (step - start_step) * tc.batch_size / max(elapsed, 1e-9),
                         "elapsed_s": elapsed})
                    if bar is not None:
                        bar.set_postfix(loss=f"{float(mean_loss):.4g}")
                if bar is not None:
                    bar.update(1)
                if step % tc.checkpoint_every == 0 and step < tc.steps:
                    checkpoint_now(final=False)
                if step >= tc.steps:
                    break
            epoch += 1
        checkpoint_now(final=True)
    finally:
        if bar is not None:
            bar.close()
        if log_file is not None:
            log_file.close()
    elapsed = time.perf_counter() - start_time
    return {"steps": step, "loss": float(loss), "seconds": elapsed, "out_dir": str(out_dir),
            "checkpoint": str(out_dir / CHECKPOINT_NAME),
            "images_per_s": (step - start_step) * tc.batch_size / max(elapsed, 1e-9)}


# ------------------------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="manifold-ae train", allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train the image model. Any config field can be set with --section.key=value "
                    "(or --key=value when the key is unique), e.g. --train.steps=500 --data.image_size=128; "
                    "a table entry with --section.key.name=value, e.g. --corruption.mask_weights.crack=0.25.",
        epilog="config keys (type, default without a preset; docs/training.md):\n" + describe_keys())
    p.add_argument("--preset", default=None, help="bundled preset name (quick, magnetic_tile, "
                   "magnetic_tile_gpu, mvtec) or a .toml/.json config file")
    p.add_argument("--out", default=None, help="run directory (same as --train.out_dir=...)")
    p.add_argument("--resume", action="store_true", help=f"continue from <out>/{CHECKPOINT_NAME} if it exists")
    p.add_argument("--dry-run", action="store_true", help="smoke test: 2 steps into <out>/dry-run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``manifold-ae train`` / ``python -m manifold_ae.commands.train`` / ``torchrun ... -m manifold_ae.commands.train``."""
    args, overrides = _parser().parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if args.out is not None:
        overrides.append(f"--train.out_dir={args.out}")
    try:
        if args.dry_run:
            out = load_config(args.preset, overrides).train.out_dir
            overrides += ["--train.steps=2", "--train.log_every=1", "--train.checkpoint_every=1",
                          f"--train.out_dir={Path(out) / 'dry-run'}"]
        config, checkpoint = _resolve_config(args.preset, overrides, resume=args.resume)
        if not args.preset and os.environ.get("RANK", "0") == "0":
            print(f"manifold-ae train: no --preset given: the built-in defaults (data.dataset = "
                  f"{config.data.dataset!r}, image_size {config.data.image_size}, model.width {config.model.width}, "
                  f"train.steps {config.train.steps}) plus the command line; --preset quick is a tiny CPU run",
                  file=sys.stderr)
        ctx = setup_distributed(config.train.device)
    except ValueError as err:
        print(f"manifold-ae train: {err}", file=sys.stderr)
        return 2
    try:
        summary = train(config, checkpoint=checkpoint, progress=not args.no_progress, ctx=ctx)
        if ctx.is_master:
            print(f"trained {summary['steps']} steps in {summary['seconds']:.1f} s "
                  f"({summary['images_per_s']:.1f} images/s), final loss {summary['loss']:.4g}; "
                  f"checkpoint: {summary['checkpoint']}")
    except (ValueError, FileNotFoundError, FloatingPointError) as err:  # bad data, settings or a diverged loss
        print(f"manifold-ae train: {err}", file=sys.stderr)
        return 2
    finally:
        teardown_distributed(ctx)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
