"""Shared pytest set-up: one torch thread (tests run beside each other on 2 cores), float64 default off, and the
rule for data sets kept outside the repository (``../shared/data``): skipped when absent, a failure under CI."""
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

#: data sets kept beside the repository, never inside it
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_data_dir(name: str, *, base: Path = SHARED_DATA) -> Path:
    """``base / name`` if it is a directory; otherwise skip the test, or fail it when ``CI`` is set (``CI=true``).

    In CI a missing data set must not turn the tests that read it into silent skips.
    """
    path = base / name
    if path.is_dir():
        return path
    where = f"data set {name!r} not found: looked for the directory {path}"
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{where}; CI is set, so a missing data set fails instead of skipping", pytrace=False)
    pytest.skip(where)


@pytest.fixture(scope="session")
def magnetic_tile_root() -> Path:
    """``../shared/data/magnetic-tile`` (Magnetic Tile Defects, Huang et al. 2020), under the rule above."""
    return shared_data_dir("magnetic-tile")


def pytest_collection_modifyitems(config, items):
    """Skip `gpu` tests when no CUDA device is present."""
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
