"""``benchmarks/gpu_checks.sh``, the prepared GPU command, run end to end on a CPU (``SMOKE=1``)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def test_gpu_checks_script_smoke(tmp_path, magnetic_tile_root):
    out, runs = tmp_path / "out", tmp_path / "runs"
    env = os.environ | {"SMOKE": "1", "OUT": str(out), "RUNS": str(runs), "DATA": str(magnetic_tile_root),
                        "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", "benchmarks/gpu_checks.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    # a device call returns at most 8 files: only the summaries stay in OUT, the run folders go to RUNS
    assert files == ["benchmark.json", "compare.json", "image_cpu.json", "log.txt", "results.md"]
    runner = json.loads((out / "benchmark.json").read_text())
    run = runner["runs"]["weave"]["0"]
    assert runner["dataset"] == "synthetic" and run["status"] == "trained" and run["train_images_per_s"] > 0
    assert run["peak_gpu_memory_mb"] is None   # a CPU run; on CUDA the peak allocated memory
    bench = json.loads((out / "image_cpu.json").read_text())
    assert bench["size"] == 32 and bench["variants"]["eager_fp32"]["train_images_per_s"] > 0
    record = json.loads((out / "compare.json").read_text())
    assert list(record["methods"]) == ["selfsupervised", "ae", "dae", "pca"]
    assert record["protocol"]["image_size"] == 32
    for method, entry in record["methods"].items():
        # the collecting run reuses the networks trained one by one before it
        assert entry["training"].get("reused", method == "pca"), method
        assert set(entry["metrics"]) == {"all", "blowhole", "crack"}
    # after 2 steps the networks are at chance (measured image AUROC 0.52-0.54), so the floors are on PCA, fitted in
    # full (k = 64) on the same 32 px tiles: measured image AUROC 0.89 (blowhole 0.92, crack 0.84), pixel AUROC
    # 0.94 (0.96, 0.95), AUPRO 0.80 (0.84, 0.83); a broken split, mask or score path falls to chance
    pca = record["methods"]["pca"]["metrics"]
    for defect in ("all", "blowhole", "crack"):
        assert pca[defect]["image_auroc"] >= 0.75, (defect, pca[defect])
        assert pca[defect]["pixel_auroc"] >= 0.85, (defect, pca[defect])
        assert pca[defect]["aupro"] >= 0.65, (defect, pca[defect])
    log = (out / "log.txt").read_text()
    assert log.count("3/3 compare magnetic_tile_gpu") == 5 and log.rstrip().endswith("done")
    assert log.count("2/3 benchmark runner") == 2 and "s to the result" in log
    assert (runs / "selfsupervised" / "checkpoint.pt").is_file()
    # the recorded JSON alone rebuilds the benchmark page (how a CUDA result measured elsewhere is added)
    doc = tmp_path / "bench.md"
    subprocess.run([sys.executable, "benchmarks/bench_image.py", "--render-only", "--results-dir", str(out),
                    "--doc", str(doc)], cwd=ROOT, check=True, capture_output=True)
    page = doc.read_text()
    assert "## cpu" in page and "eager_fp32" in page and "No CUDA run recorded yet" in page
