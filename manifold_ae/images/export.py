"""One ONNX graph of the scoring path (T8) and the JSON metadata a deployment needs beside it.

``images (B, C, H, W) in [0, 1] -> model -> residual_map -> smooth -> image_scores`` is exported as a single graph
with the outputs ``reconstruction`` (B, C, H, W), ``heatmap`` (B, H, W) and ``score`` (B,); the batch size is
dynamic, the image size fixed. The graph calls the very functions :class:`~manifold_ae.images.pipeline.Pipeline`
calls (``anomaly.scoring``), so the smoothing is the same separable Gaussian convolution with the same kernel
taps and reflect padding, folded into constants. Loading, resizing and intensity normalisation stay outside the
graph (``Pipeline.load``); the metadata names them, with the thresholds, so a consumer can reproduce them.

:func:`export_onnx` checks parity itself before writing anything: the graph, run by onnxruntime on a seeded probe
batch of a size other than the traced one, must give the Pipeline's heat maps to ``PARITY_ATOL`` and the same
threshold decision for every probe image, else it raises :class:`ExportError`; both files are written atomically.
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from manifold_ae.anomaly.scoring import image_scores, residual_map
from manifold_ae.files import atomic_write, write_json
from manifold_ae.images.pipeline import Pipeline, Scored, heat_maps
from manifold_ae.models.flips import flip_average

__all__ = ["ScoringGraph", "ExportError", "OnnxScorer", "OnnxPipeline", "export_onnx", "metadata", "read_metadata",
           "default_export_dir", "PARITY_ATOL", "OPSET", "ONNX_NAME", "METADATA_NAME", "OUTPUTS"]

PARITY_ATOL = 1e-4
OPSET = 17
ONNX_NAME = "model.onnx"
METADATA_NAME = "model.json"
OUTPUTS = ("reconstruction", "heatmap", "score")


class ExportError(ValueError):
    """The model cannot be exported without changing its numbers (an unsupported op, a shape, a parity gap)."""


class ScoringGraph(nn.Module):
    """The Pipeline's scoring as one module: images (B, C, H, W) -> (reconstruction, heatmap (B, H, W), score (B,)).

    Parameters
    ----------
    pipeline : Pipeline
        Its model, ``score_config`` and normal statistics are used as they are (:func:`~manifold_ae.images.
        pipeline.heat_maps`).
    """

    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__()
        self.model = pipeline.model
        sc = pipeline.score_config
        self.flips = sc.flips
        if sc.level_norm != "none" and not pipeline.has_normal_stats():
            raise ExportError(f"score.level_norm = {sc.level_norm!r} needs the checkpoint's normal statistics for "
                              f"score.scales = {list(sc.scales)}; none are stored (train the run again, or evaluate "
                              "it once to fit them)")
        self.score = sc
        self.register_buffer("normal_stats", None if pipeline.normal_stats is None else pipeline.normal_stats.clone())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x_hat = flip_average(self.model, x, self.flips)  # (B, C, H, W), as Pipeline.reconstruct
        heat = heat_maps(x, x_hat, score=self.score, normal_stats=self.normal_stats)  # (B, H, W), T8
        topk = self.score.topk if self.score.reduction == "topk" else None
        return x_hat, heat, image_scores(heat, reduction=self.score.reduction, topk=topk)  # (B,)


def metadata(pipeline: Pipeline, *, checkpoint: str | None = None) -> dict[str, Any]:
    """What the graph expects and how its outputs are read: preprocessing, score settings, thresholds."""
    sc = pipeline.score_config
    return {
        "format": "onnx", "opset": OPSET, "checkpoint": checkpoint, "step": pipeline.step,
        "inputs": {"images": ["batch", pipeline.channels, pipeline.image_size, pipeline.image_size]},
        "outputs": {"reconstruction": ["batch", pipeline.channels, pipeline.image_size, pipeline.image_size],
                    "heatmap": ["batch", pipeline.image_size, pipeline.image_size], "score": ["batch"]},
        "preprocessing": {"image_size": pipeline.image_size, "resize_mode": pipeline.resize_mode,
                          "channels": pipeline.channels, "range": [0.0, 1.0], "dtype": "float32",
                          "normalize": pipeline.normalize, "normalize_target": pipeline.normalize_target},
        "score": {"sigma": sc.sigma, "truncate": 4.0, "padding": "reflect", "reduction": sc.reduction,
                  "topk": sc.topk if sc.reduction == "topk" else None, "scales": list(sc.scales),
                  "level_norm": sc.level_norm, "flips": sc.flips},
        "thresholds": pipeline.thresholds or None,
        "decision": "anomalous = score >= thresholds.image; anomalous pixel = heatmap >= thresholds.pixel",
    }


def _probe(pipeline: Pipeline, *, batch: int, seed: int) -> torch.Tensor:
    """A seeded batch of smooth random images in [0, 1], shape (batch, C, H, W), normalised as ``load`` does."""
    from manifold_ae.images.pipeline import normalize_intensity

    g = torch.Generator().manual_seed(seed)
    size = pipeline.image_size
    coarse = torch.rand(batch, pipeline.channels, 8, 8, generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    x = (x + 0.05 * torch.rand(x.shape, generator=g)).clamp(0, 1)  # (B, C, H, W)
    return normalize_intensity(x, mode=pipeline.normalize, target=pipeline.normalize_target)


def _to_onnx(pipeline: Pipeline, *, batch: int) -> bytes:
    size, factor = pipeline.image_size, 2 ** getattr(pipeline.model, "depth", 0)
    if size % factor:
        raise ExportError(f"image_size = {size} is not divisible by 2**depth = {factor}; the model cannot take "
                          "images of this size, so there is nothing to export")
    graph = ScoringGraph(pipeline).to("cpu").eval()
    example = _probe(pipeline, batch=batch, seed=0)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings on the input checks, which are constant per shape
            torch.onnx.export(graph, (example,), buffer, dynamo=False, opset_version=OPSET, input_names=["images"],
                              output_names=list(OUTPUTS), do_constant_folding=True,
                              dynamic_axes={"images": {0: "batch"}, "reconstruction": {0: "batch"},
                                            "heatmap": {0: "batch"}, "score": {0: "batch"}})
    except ExportError:
        raise
    except Exception as err:  # unsupported operators, untraceable control flow
        raise ExportError(f"torch.onnx.export could not export the model ({type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''}); nothing was written") from err
    import onnx

    blob = buffer.getvalue()
    onnx.checker.check_model(onnx.load_from_string(blob), full_check=True)  # a well-formed, type-consistent graph
    return blob


class OnnxScorer:
    """An exported graph run by onnxruntime on the CPU: images (B, C, H, W) -> (reconstruction, heatmap, score)."""

    def __init__(self, model: bytes | str | Path, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = options.inter_op_num_threads = int(threads)
        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, C, H, W) float tensor in [0, 1] -> torch tensors (B, C, H, W), (B, H, W), (B,)."""
        feed = {"images": np.ascontiguousarray(x.detach().float().cpu().numpy())}
        return tuple(torch.from_numpy(out) for out in self.session.run(list(OUTPUTS), feed))  # type: ignore


def _parity(pipeline: Pipeline, scorer: OnnxScorer, *, batch: int) -> dict[str, float]:
    """Pipeline vs graph on a probe batch; raises ExportError past ``PARITY_ATOL`` or on a changed decision."""
    x = _probe(pipeline, batch=batch, seed=1)
    ref = pipeline(x)
    rec, heat, score = scorer(x)
    gaps = {"reconstruction": float((rec - ref.reconstruction).abs().max()),
            "heatmap": float((heat - ref.heatmap).abs().max()), "score": float((score - ref.score).abs().max())}
    bad = {k: v for k, v in gaps.items() if not v <= PARITY_ATOL}  # a NaN gap fails too
    if bad:
        raise ExportError(f"the exported graph differs from the Pipeline on a probe batch of {batch} images by "
                          f"{bad} (max abs), more than {PARITY_ATOL}; nothing was written")
    thr = pipeline.thresholds or {}
    for key, ours, theirs in (("image", score, ref.score), ("pixel", heat, ref.heatmap)):
        if key in thr and not torch.equal(ours >= thr[key], theirs >= thr[key]):
            raise ExportError(f"the exported graph changes a {key} threshold decision (threshold {thr[key]}) on "
                              "the probe batch; nothing was written")
    return gaps


def export_onnx(pipeline: Pipeline, out_dir: str | Path, *, checkpoint: str | None = None,
                trace_batch: int = 2, probe_batch: int = 3) -> dict[str, Any]:
    """Export ``pipeline`` as ``out_dir/model.onnx`` + ``out_dir/model.json`` after checking parity.

    The graph is traced on ``trace_batch`` images and checked on ``probe_batch`` (a different size, so the dynamic
    batch axis is exercised). Returns the metadata written, including the measured ``parity`` gaps.

    Raises
    ------
    ExportError
        When the model cannot be exported or the exported graph would change its numbers; nothing is written.
    """
    if trace_batch == probe_batch:
        raise ValueError(f"probe_batch must differ from trace_batch = {trace_batch} so the dynamic batch axis is "
                         "checked")
    blob = _to_onnx(pipeline, batch=trace_batch)
    gaps = _parity(pipeline, OnnxScorer(blob), batch=probe_batch)
    meta = metadata(pipeline, checkpoint=checkpoint)
    meta["parity"] = {"atol": PARITY_ATOL, "probe_batch": probe_batch, "max_abs_gap": gaps}
    out_dir = Path(out_dir)
    atomic_write(out_dir / ONNX_NAME, lambda handle: handle.write(blob), binary=True)
    write_json(out_dir / METADATA_NAME, meta)
    return meta


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata beside an exported graph (``model.json`` in a folder, or the file itself)."""
    path = Path(path)
    path = path / METADATA_NAME if path.is_dir() else path
    if not path.is_file():
        raise ValueError(f"{path} does not exist; expected the {METADATA_NAME} written by manifold-ae export")
    return json.loads(path.read_text(encoding="utf-8"))


def default_export_dir(checkpoint: str | Path) -> Path:
    """``<run directory>/export``: where ``manifold-ae export`` writes and ``predict --backend onnxruntime`` reads."""
    path = Path(checkpoint)
    return (path if path.is_dir() else path.parent) / "export"


class OnnxPipeline(Pipeline):
    """A :class:`Pipeline` whose scoring runs the exported graph in onnxruntime; loading and thresholds unchanged.

    Parameters
    ----------
    pipeline : Pipeline
        The checkpoint's pipeline (its ``load``, thresholds and settings are kept).
    export_dir : str or Path
        Folder holding ``model.onnx`` and ``model.json``; the metadata must describe ``pipeline``'s preprocessing.
    """

    def __init__(self, pipeline: Pipeline, export_dir: str | Path) -> None:
        self.__dict__.update(pipeline.__dict__)
        export_dir = Path(export_dir)
        stored = read_metadata(export_dir)["preprocessing"]
        expected = metadata(pipeline)["preprocessing"]
        if stored != expected:
            raise ValueError(f"{export_dir / METADATA_NAME} describes preprocessing {stored}, but the checkpoint "
                             f"expects {expected}; export the checkpoint again (manifold-ae export)")
        if not (export_dir / ONNX_NAME).is_file():
            raise ValueError(f"{export_dir / ONNX_NAME} does not exist; run manifold-ae export first")
        self.scorer = OnnxScorer(export_dir / ONNX_NAME)

    def __call__(self, x: torch.Tensor) -> Scored:
        """Images (B, C, H, W) in [0, 1] -> :class:`Scored`, computed by the exported graph."""
        expected = (self.channels, self.image_size, self.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"x must have shape (B, {', '.join(map(str, expected))}) (as loaded by "
                             f"Pipeline.load), got {tuple(x.shape)}")
        x = x.detach().float().cpu()
        x_hat, heat, score = self.scorer(x)  # (B, C, H, W), (B, H, W), (B,)
        return Scored(x, x_hat, residual_map(x, x_hat), heat, score)
