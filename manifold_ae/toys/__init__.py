"""The toy application (apps layer): the reusable experiments on vector data that the claims, widgets and
notebooks share (tasks, retractions, trained baselines) and the scikit-learn style detectors. Built on the core
only; claims read as short verdicts over these pieces.
"""
