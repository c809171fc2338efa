"""Figures and explorers built on the verified claims (docs/theory.md, T1-T9); nothing else imports them.

* ``figures``, ``anomaly_figures``, ``overlays``: matplotlib builders for the claim checks and the reports.
* ``interactive``: plotly builders (manifolds in 3-D with normal rays, reconstruction fields, spectra).
* ``widgets``: ipywidgets explorers (``reach_explorer``, ``linear_dae_explorer``, ``dae_field_explorer``) and the
  ``PlaneCurve`` toy (circle or spiral in a plane of R^n with exact projection and Bayes denoiser).
* ``explorers``: the explorers of notebooks 4-8 (``contraction_explorer``, ``masked_projection_explorer``,
  ``roc_explorer``, ``image_explorer``, ``run_browser``).

Import the submodule you need (``from manifold_ae.viz.widgets import dae_field_explorer``); this package
itself imports nothing, so the headless claim runners never load plotly or ipywidgets.
"""
