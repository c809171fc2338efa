"""Closed-form optima (oracles) and projection-gap diagnostics (docs/theory.md, T2–T7).

``linear``: the one PCA (``principal_components``), principal angles, linear DAE / reconstruction-contractive
optimum (T2, T3).
``bayes``: Bayes-optimal denoisers (sphere, circle, flat torus, Gaussian subspace), Tweedie, quadrature over any
manifold, and the exact self-supervised-corruption map for Gaussian data (T4, T6).
``masked``: masked projection onto a subspace or a dense point cloud (T6).
``diagnostics``: the one batched Jacobian (``jacobian``, also behind the objectives' exact penalty), projection
and Jacobian gaps, idempotence, residual angle, log-log rates.
All functions take plain float64 tensors (centre ``c``, embedding ``Q``, radii, covariances, point clouds);
``posterior_mean``/``posterior_covariance`` also accept a manifold object of ``manifold_ae.manifolds``.
"""
from manifold_ae.theory.bayes import (CLOSED_FORM_MANIFOLDS, bessel_ratio, circle_posterior_mean,
                                      flat_torus_posterior_covariance, flat_torus_posterior_mean,
                                      gaussian_subspace_posterior_mean, log_density_quadrature,
                                      masked_gaussian_mask_posterior, masked_gaussian_posterior_mean,
                                      masked_posterior_mean_quadrature, posterior_covariance,
                                      posterior_covariance_quadrature, posterior_mean, posterior_mean_quadrature,
                                      sphere_log_density, sphere_posterior_covariance, sphere_posterior_mean,
                                      tweedie_denoiser, wiener_filter)
from manifold_ae.theory.diagnostics import (LogLogFit, ProjectionGap, idempotence_error, jacobian, jacobian_gap,
                                            loglog_fit, loglog_slope, projection_gap, residual_normal_angle)
from manifold_ae.theory.linear import (PrincipalComponents, linear_contractive_optimum, linear_dae_optimum,
                                       linear_dae_risk, moment_matrix, pca_basis, principal_angles,
                                       principal_components, shrinkage_eigenvalues)
from manifold_ae.theory.masked import MaskedProjection, masked_projection_pointcloud, masked_projection_subspace

__all__ = [
    "CLOSED_FORM_MANIFOLDS", "posterior_mean", "posterior_covariance",
    "bessel_ratio", "circle_posterior_mean", "flat_torus_posterior_covariance", "flat_torus_posterior_mean",
    "gaussian_subspace_posterior_mean", "log_density_quadrature", "masked_gaussian_mask_posterior",
    "masked_gaussian_posterior_mean", "masked_posterior_mean_quadrature", "posterior_covariance_quadrature",
    "posterior_mean_quadrature", "sphere_log_density", "sphere_posterior_covariance", "sphere_posterior_mean",
    "tweedie_denoiser", "wiener_filter",
    "LogLogFit", "ProjectionGap", "idempotence_error", "jacobian", "jacobian_gap", "loglog_fit", "loglog_slope",
    "projection_gap", "residual_normal_angle",
    "PrincipalComponents", "linear_contractive_optimum", "linear_dae_optimum", "linear_dae_risk", "moment_matrix",
    "pca_basis", "principal_angles", "principal_components", "shrinkage_eigenvalues",
    "MaskedProjection", "masked_projection_pointcloud", "masked_projection_subspace",
]
