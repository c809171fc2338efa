"""The one optimisation step shared by toy vectors and images.

An *objective* is an ``nn.Module`` that owns the model and whose ``forward(x)`` returns the scalar loss for a
clean batch ``x`` (lucidrains style). ``train_step`` is the single step both ``fit`` (toys, in memory) and
``manifold_ae.commands.train`` (images, DataLoader/DDP/checkpoints) call.
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, Sequence

import torch
from torch import nn

from manifold_ae.checks import check_int, check_positive

__all__ = ["train_step", "check_finite", "fit", "cosine_schedule", "random_crop", "random_flip", "sample_seeds"]


def random_crop(x: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """One random ``size`` x ``size`` window per image: (B, C, H, W) -> (B, C, size, size).

    Offsets are uniform over all valid positions, drawn on the CPU (from ``generator``, else the global RNG).
    """
    b, _, h, w = x.shape
    if not 0 < size <= min(h, w):
        raise ValueError(f"crop size must be in [1, min(H, W) = {min(h, w)}], got {size}")
    top = torch.randint(0, h - size + 1, (b,), generator=generator).tolist()
    left = torch.randint(0, w - size + 1, (b,), generator=generator).tolist()
    return torch.stack([x[i, :, t:t + size, l:l + size] for i, (t, l) in enumerate(zip(top, left))])


def random_flip(x: torch.Tensor, flips: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image (B, C, H, W) replaced by g x for an element g of the flip group ``flips`` (``models.flips``),
    drawn uniformly per image on the CPU (from ``generator``, else the global RNG). ``none`` returns ``x``."""
    from manifold_ae.models.flips import flip_group

    group = flip_group(flips)
    if len(group) == 1:
        return x
    which = torch.randint(0, len(group), (x.shape[0],), generator=generator).tolist()
    return torch.stack([x[i].flip(group[j]) if group[j] else x[i] for i, j in enumerate(which)])  # dims < 0


def random_gain(x: torch.Tensor, jitter: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image (B, C, H, W) times its own gain g, uniform in [1 − jitter, 1 + jitter] (drawn on the CPU from
    ``generator``, else the global RNG), clipped to [0, 1]. ``jitter = 0`` returns ``x`` and draws nothing.

    After per-image gain normalisation every training image has the same mean; a jittered gain makes it vary,
    for a model that can see it. (A network whose first bias-free convolution is followed by a per-image
    normalisation, the GroupNorm U-Net, cannot: it is invariant to a global gain, docs/results.md.)"""
    if jitter == 0:
        return x
    if not 0 < jitter < 1:
        raise ValueError(f"jitter (train.gain_jitter) must be in [0, 1), got {jitter!r}")
    g = 1 + jitter * (2 * torch.rand(x.shape[0], generator=generator) - 1)  # (B,)
    return (x * g.to(x.device, x.dtype).view(-1, 1, 1, 1)).clamp(0.0, 1.0)


def _mix64(z: int) -> int:
    """SplitMix64's finaliser: a bijection of 64-bit integers that spreads every input bit over the output."""
    z = (z + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


def sample_seeds(*, seed: int, step: int, positions: Sequence[int]) -> list[int]:
    """One corruption seed in [0, 2**63) per sample, from the run's ``seed``, the ``step`` and each sample's
    position in the global batch (host integers only).

    Every process derives the seeds of its own samples, so the corruption of a global batch does not depend on
    how it is split over processes (``objectives.SelfSupervised(..., seeds=)``), nor on a resume.
    """
    seed, step = check_int(seed, "seed", minimum=0), check_int(step, "step", minimum=0)
    base = _mix64(_mix64(seed) ^ step)
    return [_mix64(base ^ check_int(j, "positions[i]", minimum=0)) >> 1 for j in positions]


def train_step(objective: nn.Module, batch: torch.Tensor, optimizer: torch.optim.Optimizer, *,
               clip: float | None = None, autocast_dtype: torch.dtype | None = None,
               seeds: Sequence[int] | None = None) -> torch.Tensor:
    """One gradient step on ``batch`` (B, ...); returns the detached scalar loss *tensor*.

    No host synchronisation happens here (on CUDA a ``float()`` or finiteness test every step would stall the
    GPU); callers read and check the loss when they log it (``check_finite``). ``autocast_dtype`` (e.g.
    ``torch.bfloat16``) runs the forward pass under autocast on the batch's device. ``clip`` clips the global
    gradient norm. ``seeds`` (one per sample, :func:`sample_seeds`) is passed on to objectives that corrupt
    (``objective(batch, seeds=seeds)``).
    """
    objective.train()
    optimizer.zero_grad(set_to_none=True)
    ctx = (torch.autocast(device_type=batch.device.type, dtype=autocast_dtype)
           if autocast_dtype is not None else contextlib.nullcontext())
    with ctx:
        loss = objective(batch) if seeds is None else objective(batch, seeds=seeds)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(objective.parameters(), clip)
    optimizer.step()
    return loss.detach()


def check_finite(loss: float, *, step: int) -> float:
    """Return ``loss`` or raise FloatingPointError naming the step when it is NaN or infinite."""
    if not math.isfinite(loss):
        raise FloatingPointError(f"loss became {loss} (non-finite) at step {step}; lower the learning rate or "
                                 "check the data")
    return loss


def cosine_schedule(optimizer: torch.optim.Optimizer, *, steps: int, warmup: int = 0,
                    final_fraction: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up for ``warmup`` steps, then cosine decay to ``final_fraction`` of the base rate."""
    steps = check_int(steps, "steps", minimum=1)
    warmup = check_int(warmup, "warmup", minimum=0)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, steps - warmup))
        return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def fit(objective: nn.Module, x: torch.Tensor, *, steps: int = 2000, batch_size: int = 256, lr: float = 1e-3,
        weight_decay: float = 0.0, warmup: int = 0, clip: float | None = None, seed: int = 0,
        progress: bool = False, callback: Callable[[int, float], None] | None = None) -> list[float]:
    """Train ``objective`` on the in-memory data ``x`` (N, ...) with AdamW and a cosine schedule.

    Mini-batches are drawn with replacement from a generator seeded by ``seed``; returns the loss history.
    The objective's own randomness (noise, masks) uses torch's global RNG, seeded here as well.
    """
    steps = check_int(steps, "steps", minimum=1)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    check_positive(lr, "lr")
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"x must have shape (N, ...) with N >= 1, got shape {tuple(x.shape)}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in objective.parameters() if p.requires_grad]
    if not params:
        raise ValueError("objective has no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    scheduler = cosine_schedule(optimizer, steps=steps, warmup=warmup)
    history: list[float] = []
    iterator = range(steps)
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(iterator, desc=type(objective).__name__, leave=False)
    for step in iterator:
        idx = torch.randint(0, x.shape[0], (min(batch_size, x.shape[0]),), generator=gen)
        loss = check_finite(float(train_step(objective, x[idx], optimizer, clip=clip)), step=step)
        scheduler.step()
        history.append(loss)
        if callback is not None:
            callback(step, loss)
    objective.eval()
    return history
