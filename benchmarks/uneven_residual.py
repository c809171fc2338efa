"""Where the residual of a large soft defect goes: core, shoulder and far field (analysis, docs/theory.md T7).

On the run's first held-out normal images x, with the seeded ``synthetic_uneven`` defects that ``manifold-ae
diagnose`` uses (``images.diagnose.make_defects``, seed 3 = diagnose's seed 0 + the kind's index), at opacity 1,
through the map ``evaluate`` scores (``Pipeline.reconstruct``: flip-averaged by ``score.flips``):

* ``energy_vs_ideal``: the model's squared residual ‖x̃ − f(x̃)‖² over the ideal ‖x̃ − f(x)‖² (a map that
  removes the defect exactly and keeps its own error on the clean image, i.e. π_S with the model's error), pooled over
  three regions of the soft blend weight w: the labelled core (w ≥ 1/2), the shoulder (0.05 ≤ w < 1/2) and the
  far field (w < 0.05), where the ideal residual is the clean image's own;
* ``pixel_auroc``: pooled pixel AUROC (``images.diagnose.localisation_by_scale``, σ = ``score.sigma``) of the
  model, of that ideal map and of the oracle restorer f(x̃) = x (residual = the defect itself), with the label at
  w ≥ 1/2 as the validation set labels it;
* per image, whether the fill was a gain or a contrast change and the image's AUROC against clean pixels, the
  mean intensity of x̃ and of f(x̃), and ``far_shift``, the mean of f(x̃) − f(x) over the far field: how the
  model moves the pixels the defect did not touch (a model that enforces the one mean of gain-normalised
  training images shifts them against the defect).

    python benchmarks/uneven_residual.py runs/mt_new0 --out benchmarks/results/mt_uneven_residual_new0.json

Reads no test set.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from manifold_ae.anomaly.metrics import auroc
from manifold_ae.anomaly.scoring import residual_map, smooth
from manifold_ae.files import write_json
from manifold_ae.images.diagnose import localisation_by_scale, make_defects
from manifold_ae.images.pipeline import Pipeline, build_datasets


def _energy_ratio(r_model: torch.Tensor, r_ideal: torch.Tensor, region: torch.Tensor) -> float:
    return float(r_model[region].sum() / r_ideal[region].sum())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run")
    p.add_argument("--images", type=int, default=16, help="the first N held-out normal images (diagnose: 16)")
    p.add_argument("--seed", type=int, default=3, help="defect seed (diagnose gives synthetic_uneven 0 + 3)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    pipe = Pipeline.from_checkpoint(args.run, device="cpu")
    assert pipe.config is not None
    holdout = build_datasets(pipe.config.data).holdout
    x = torch.stack([holdout[i]["image"] for i in range(min(args.images, len(holdout)))]).float()  # (B, C, H, W)
    d = make_defects(x, kind="synthetic_uneven", seed=args.seed)
    x_tilde = d.at(1.0)
    with torch.no_grad():
        fx, fy = pipe.reconstruct(x), pipe.reconstruct(x_tilde)
    w = d.mask[:, 0]  # (B, H, W) soft blend weight
    regions = {"core (w >= 0.5)": w >= 0.5, "shoulder (0.05 <= w < 0.5)": (w >= 0.05) & (w < 0.5),
               "far (w < 0.05)": w < 0.05}
    r_model, r_ideal = residual_map(x_tilde, fy), residual_map(x_tilde, fx)  # (B, H, W)
    sigma = pipe.score_config.sigma
    record = {"run": args.run, "images": int(x.shape[0]), "seed": args.seed, "flips": pipe.score_config.flips,
              "region_fraction": {k: float(v.float().mean()) for k, v in regions.items()},
              "energy_vs_ideal": {k: _energy_ratio(r_model, r_ideal, v) for k, v in regions.items()},
              "pixel_auroc": {name: [r["pixel_auroc"] for r in localisation_by_scale(f, d, scales=(1, 4, 16),
                                                                                     sigma=sigma)]
                              for name, f in (("model", pipe.reconstruct),
                                              ("ideal f(x~) = f(x)", lambda t: fx),
                                              ("oracle f(x~) = x", lambda t: x))},
              "pixel_auroc_scales": [1, 4, 16]}
    clean_pixels = smooth(residual_map(x, fx), sigma=sigma).flatten()
    heat = smooth(r_model, sigma=sigma)
    per_image = []
    for b in range(x.shape[0]):
        core = w[b] >= 0.5
        xb, cb = x[b, 0][core], d.content[b, 0][core]
        slope, intercept = torch.linalg.lstsq(torch.stack([xb, torch.ones_like(xb)], 1), cb[:, None]).solution[:, 0]
        pos = heat[b][core]
        labels = torch.cat([torch.zeros(clean_pixels.numel()), torch.ones(pos.numel())]).numpy()
        far = w[b] < 0.05
        per_image.append({"mean_input": float(x_tilde[b].mean()), "mean_output": float(fy[b].mean()),
                          "defect_sign": float(torch.sign((x_tilde[b] - x[b]).sum())),
                          "far_shift": float((fy[b] - fx[b])[:, far].mean()) if bool(far.any()) else float("nan"),
                          "fill": "gain" if abs(float(intercept)) < 1e-3 else "contrast",
                          "factor": float(slope), "core_fraction": float(core.float().mean()),
                          "auroc_vs_clean_pixels": auroc(labels, torch.cat([clean_pixels, pos]).double().numpy())})
    record["per_image"] = per_image
    write_json(Path(args.out), record)
    for key in ("energy_vs_ideal", "pixel_auroc"):
        print(key, {k: (round(v, 3) if isinstance(v, float) else [round(a, 3) for a in v])
                    for k, v in record[key].items()})
    print("mean of x~ / f(x~) / far shift:", [f"{e['mean_input']:.3f}/{e['mean_output']:.4f}/{e['far_shift']:+.4f}"
                                               for e in per_image])
    print("per image AUROC vs clean pixels:", [f"{e['fill'][0]}{e['factor']:.2f}:{e['auroc_vs_clean_pixels']:.2f}"
                                              for e in per_image])
    return 0


if __name__ == "__main__":
    sys.exit(main())
