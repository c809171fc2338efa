"""Regenerate the README pictures: ``python docs/img/make_images.py`` (a few seconds on one CPU core).

``dae_field.png``: notebook 3's picture, the Bayes-optimal DAE field r*(x) − x on the spiral next to the
projection's field π(x) − x (docs/theory.md, T4).
"""
from __future__ import annotations

from pathlib import Path

from manifold_ae.viz.figures import vector_field
from manifold_ae.viz.widgets import plane_curve


def main() -> Path:
    spiral = plane_curve("spiral")
    fig = vector_field({"Bayes-optimal DAE r*(x) − x, σ = 0.05": lambda g: spiral.posterior_mean(g, sigma=0.05).numpy(),
                        "orthogonal projection π(x) − x": lambda g: spiral.project_plane(g).numpy()},
                       extent=(-1.6, 1.6, -1.6, 1.6), grid=19, manifold=spiral.nodes.numpy())
    out = Path(__file__).resolve().parent / "dae_field.png"
    fig.savefig(out, dpi=80)
    return out


if __name__ == "__main__":
    path = main()
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} kB)")
