"""benchmarks/bench_image.py: variants, preset models, result files and bad flags (no timings asserted)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "benchmarks/bench_image.py", "--quick", "--threads", "1", *flags,
                           "--results-dir", str(tmp_path), "--doc", str(tmp_path / "bench.md")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_preset_model_with_the_bf16_variant(tmp_path):
    proc = bench(tmp_path, "--preset", "magnetic_tile", "--size", "32", "--tag", "mt32",
                 "--variants", "eager_fp32,bf16")
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads((tmp_path / "image_cpu_mt32.json").read_text())
    from manifold_ae.images.config import load_config
    from manifold_ae.images.pipeline import build_model

    cfg = load_config("magnetic_tile")
    # the preset's own network (skip_from, dilations), its channels and training batch
    assert r["model"]["parameters"] == sum(p.numel() for p in build_model(cfg.model, channels=1).parameters())
    assert r["model"]["channels"] == cfg.data.channels == 1 and r["size"] == 32 and r["preset"] == "magnetic_tile"
    assert (r["model"]["width"], r["model"]["depth"]) == (cfg.model.width, cfg.model.depth) == (16, 4)
    assert r["variants"]["eager_fp32"]["train_batch"] == cfg.train.batch_size
    assert not r["variants"]["eager_fp32"]["bf16_autocast"] and r["variants"]["bf16"]["bf16_autocast"]
    assert not r["variants"]["bf16"]["channels_last"] and "speedup_train" in r["variants"]["bf16"]
    assert "`magnetic_tile` model, 32²" in (tmp_path / "bench.md").read_text()


def test_unknown_variant_is_a_usage_error(tmp_path):
    proc = bench(tmp_path, "--variants", "eager_fp32,fp8")
    assert proc.returncode == 2 and "'fp8'" in proc.stderr and "channels_last_bf16" in proc.stderr
    assert not list(tmp_path.glob("image_*.json"))


def test_data_path_mode_records_every_stage_against_the_pillow_baseline(tmp_path):
    proc = bench(tmp_path, "--data-path")
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads((tmp_path / "data_path_cpu_quick.json").read_text())
    rates = r["images_per_s"]
    assert set(rates) == {"pil_decode_baseline", "load_image_decode", "load_image_decode_resize_512_to_256",
                          "cache_hit_one_worker", "load_image_vs_pil"}
    assert all(v > 0 for v in rates.values())
    assert rates["load_image_vs_pil"] == rates["load_image_decode"] / rates["pil_decode_baseline"]
    assert r["size"] == 256 and r["goal_cache_images_per_s"] == 400 and isinstance(r["goal_met"], bool)
    assert not (tmp_path / "bench.md").exists()   # the model page is left alone
