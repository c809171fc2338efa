"""``manifold-ae`` command line: one sub-command per job, each implemented by ``main(argv)`` in its module.

    manifold-ae verify          numerical verification of the claims T1-T10 (docs/theory.md)
    manifold-ae make-synthetic  write the built-in synthetic image dataset (MVTec layout)
    manifold-ae check-data      read every image and mask of a config's datasets, listing every problem
    manifold-ae train           train the image model (also: torchrun -m manifold_ae.commands.train)
    manifold-ae evaluate        checkpoint + dataset -> metrics, tables and overlays
    manifold-ae predict         checkpoint + folder of images -> heat maps and scores.json
    manifold-ae export          checkpoint -> one ONNX graph (model, heat map, score) + metadata JSON
    manifold-ae compare         self-supervised model vs plain AE, Gaussian DAE and PCA on one dataset
    manifold-ae diagnose        how projection-like a trained image model is (idempotence, conservation, gates, J)
    manifold-ae benchmark       every category x seed of a dataset trained, evaluated, one mean ± std table
    manifold-ae demo            the main job: verify + a quick image training run on the built-in data
"""
from __future__ import annotations

import importlib
import sys

from manifold_ae.files import OutputError

COMMANDS: dict[str, tuple[str, str]] = {
    "verify": ("manifold_ae.claims.runner", "verify the theory's claims numerically (T1-T10)"),
    "make-synthetic": ("manifold_ae.images.data.synthetic", "write the built-in synthetic dataset"),
    "check-data": ("manifold_ae.commands.check_data", "read every image and mask of a config's datasets"),
    "train": ("manifold_ae.commands.train", "train the image model on a dataset"),
    "evaluate": ("manifold_ae.commands.evaluate", "evaluate a checkpoint: metrics, tables, overlays"),
    "predict": ("manifold_ae.commands.predict", "score a folder of images with a checkpoint"),
    "export": ("manifold_ae.commands.export", "export a checkpoint's scoring as one ONNX graph + metadata"),
    "compare": ("manifold_ae.commands.compare", "self-supervised model vs baselines (AE, DAE, PCA) on one dataset"),
    "diagnose": ("manifold_ae.commands.diagnose", "how projection-like is a trained model: idempotence, gates, J"),
    "benchmark": ("manifold_ae.commands.benchmark", "train and evaluate every category x seed: mean ± std table"),
    "demo": ("manifold_ae.commands.demo", "the main job: verify + quick image run on the built-in data"),
}


def _usage() -> str:
    lines = ["usage: manifold-ae <command> [options]", "", "commands:"]
    lines += [f"  {name:<15} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `manifold-ae <command> --help` for the options of a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"manifold-ae: unknown command {name!r}; expected one of {sorted(COMMANDS)}\n\n{_usage()}",
              file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(module.main(rest) or 0)
    except OutputError as err:   # a read-only or full output folder: one line, not a traceback
        print(f"manifold-ae {name}: error: {err.strerror}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.filename is None:   # not about a path: a real fault, keep its traceback
            raise
        print(f"manifold-ae {name}: error: {err.filename}: {err.strerror or err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
