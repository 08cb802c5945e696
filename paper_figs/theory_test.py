"""The theory test: does rank-transforms' Î(A;C|X), measured before training, predict the
downstream gain of E-SSL with each transformation? (Wang et al., NeurIPS 2024, issue 9.)

    python paper_figs/theory_test.py                        # quick: digits and transform-world
    python paper_figs/theory_test.py --dataset transform-world --jobs 2
    python paper_figs/theory_test.py --plot-only
    python paper_figs/theory_test.py --compare results/theory_test_transform-world_seeds100.json

compute() -> paper_figs/results/theory_test.json (one result per dataset and mode, with
            provenance; a dataset not recomputed keeps its saved result);
plot()    -> paper_figs/theory_test.png (prediction against gain, 95 % bars, ρ with its
bootstrap interval).
compare() -> a replicate (``essl-info theory-test … --first-seed 100 --json``) against the
            saved result of its dataset: z of every accuracy, gain, baseline and ρ
            (``theory_report.replicate_agreement``).
The runs live under runs/theory-<dataset>-<mode>/ and are reused: an interrupted compute()
continues where it stopped. --full runs Wang et al. Fig. 1's setting
on CIFAR-10 (GPU; 7 transformations × 2 objectives × 3 seeds + 6 baselines = 48 runs of
200 epochs of ResNet-18: of the order of 50-100 GPU-hours, not yet measured).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "theory_test.json"
FIGURE = HERE / "theory_test.png"
DATASETS = ("transform-world", "digits")


def compute(datasets=DATASETS, *, mode: str = "quick", seeds: int | None = None,
            jobs: int = 2, root: Path | None = None, transforms=None,
            out: Path = RESULTS, data_dir: str | None = None) -> list[dict]:
    from essl_info.diagnostics.rank import DEFAULT_CANDIDATES
    from essl_info.experiments.provenance import loadavg
    from essl_info.experiments.theory import theory_test

    # results of datasets not recomputed now are kept (one row per dataset and mode)
    old = json.loads(out.read_text()) if out.exists() else []
    rows = [r for r in old if (r["dataset"], r["mode"]) not in {(d, mode) for d in datasets}]
    for ds in datasets:
        t0 = time.time()
        res = theory_test(ds, list(transforms or DEFAULT_CANDIDATES), mode=mode, seeds=seeds,
                          jobs=jobs, data_dir=data_dir,
                          root=None if root is None else Path(root) / f"{ds}-{mode}")
        res["provenance"].update({"command": " ".join(sys.argv), "wall_s": time.time() - t0,
                                  "machine": platform.node(),
                                  "loadavg": loadavg()})
        rows.append(res)
    order = {d: k for k, d in enumerate(DATASETS)}
    rows.sort(key=lambda r: (order.get(r["dataset"], len(order)), r["dataset"], r["mode"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    return rows


def compare(replicate: Path, saved: Path = RESULTS) -> str:
    from essl_info.experiments.theory_report import (
        format_agreement,
        replicate_agreement,
    )

    try:
        b = json.loads(Path(replicate).read_text())
        dataset, mode = b["dataset"], b["mode"]
        match = [r for r in json.loads(saved.read_text())
                 if (r["dataset"], r["mode"]) == (dataset, mode)]
        if not match:
            raise ValueError(f"{saved} has no {dataset}/{mode} result to compare with")
        return format_agreement(replicate_agreement(match[0], b))
    except json.JSONDecodeError as e:
        raise ValueError(f"{replicate}: not JSON ({e.msg}, line {e.lineno})") from None
    except (KeyError, TypeError, IndexError):
        raise ValueError(f"{replicate}: not a theory-test --json result (the output of "
                         f"essl-info theory-test ... --json)") from None
    except OSError as e:
        raise ValueError(f"{replicate}: {e.strerror}") from None


def plot(rows: list[dict], out: Path = FIGURE) -> Path:
    """One row of panels per dataset (pure, E-SimCLR), linear-probe gain."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from essl_info.experiments.theory_report import plot as plot_one

    parts = []
    for k, res in enumerate(rows):
        parts.append(plot_one(res, out.with_name(f"{out.stem}_{k}.png")))
    images = [Image.open(p) for p in parts]
    w = max(i.width for i in images)
    canvas = Image.new("RGB", (w, sum(i.height for i in images)), "white")
    y = 0
    for i, p in zip(images, parts):
        canvas.paste(i, (0, y))
        y += i.height
        p.unlink()
    canvas.save(out)
    plt.close("all")
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", action="append", default=None)
    p.add_argument("--mode", choices=("tiny", "quick", "full"), default="quick")
    p.add_argument("--seeds", type=int, default=None)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--plot-only", action="store_true")
    p.add_argument("--compare", type=Path, default=None, metavar="JSON",
                   help="compare a replicate's --json output with the saved result")
    a = p.parse_args()
    if a.compare:
        try:
            print(compare(a.compare if a.compare.exists() else HERE / a.compare))
        except ValueError as e:
            p.error(str(e))
        raise SystemExit(0)
    rows = (json.loads(RESULTS.read_text()) if a.plot_only else
            compute(a.dataset or DATASETS, mode=a.mode, seeds=a.seeds, jobs=a.jobs,
                    data_dir=a.data_dir))
    print(f"wrote {plot(rows)}")
