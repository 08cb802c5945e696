"""The figure scripts' fast path: compute() on a small setting and plot() from its rows."""

import importlib.util
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "paper_figs" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_rotation_world_agreement_fast_path(tmp_path):
    fig = _load("rotation_world_agreement")
    rows = fig.compute(settings=[(2, 0.1, 0.5, 0.0), (2, 0.1, 0.1, 0.5)], n_images=256,
                       out=tmp_path / "r.json", jobs=2)
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(rows))
    assert saved["provenance"]["wall_s"] > 0 and saved["provenance"]["library_version"]
    for q in ("H(A|X)", "I(A;C|X)"):
        r = rows[0][q]
        assert math.isfinite(r["estimate"]) and r["stderr"] > 0
        assert 0 < r["exact"] <= math.log(4)
    assert abs(rows[0]["I(A;C|X)"]["exact"] - 0.5031) < 1e-4  # issue 4's reference value
    # the rows do not depend on how many settings run at a time
    alone = fig.compute(settings=[(2, 0.1, 0.1, 0.5)], n_images=256, out=tmp_path / "s.json")
    for q in ("H(A|X)", "I(A;C|X)"):
        assert alone[0][q]["estimate"] == rows[1][q]["estimate"]
        assert alone[0][q]["stderr"] == rows[1][q]["stderr"]
    png = fig.plot(rows, out=tmp_path / "f.png")
    assert png.stat().st_size > 10_000
