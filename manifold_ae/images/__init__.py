"""The image application (apps layer): run configuration, datasets, the one pre/post-processing path, the
synthetic validation set and the PCA baseline. Built only on the core (models, corruptions, objectives, loop,
anomaly); the commands in ``manifold_ae.commands`` drive it.
"""
