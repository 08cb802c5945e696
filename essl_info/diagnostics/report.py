"""How a :class:`~essl_info.types.Report` is shown: text tables, JSON, CSV and plots.

Pure formatting: nothing here estimates anything. Every value is printed signed, in nats,
with its standard error and 95 % interval, the method that produced it and the number of
rows it used (DESIGN §4). Plots use matplotlib's Agg backend (no display needed).

Conventions the producers (``measure``, ``rank_transforms``) follow and this module reads:
- ``Estimate.params["transformation"]``: the transformation an estimate is about;
- ``Report.extra["flags"]``: list of ``{"message": str, ...}`` shown under a table;
- ``Report.extra["ranking"]``: for ``rank_transforms``, a list of
  ``{"rank", "transformation", "n_classes", "verdict", "reason"}`` in rank order;
- ``Report.provenance["epoch"]``: the training epoch of a checkpoint (x axis of run plots).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Sequence

from ..types import Estimate, Report

CSV_COLUMNS = ("checkpoint", "dataset", "epoch", "step", "layer", "transformation",
               "quantity", "method", "value", "stderr", "ci_low", "ci_high", "n")


# ================================================================== small formatters
def _r(x: float, digits: int = 3) -> float:
    """Rounded for display, without a "-0.000" for a tiny negative value."""
    return round(x, digits) + 0.0


def _value_pm(e: Estimate) -> str:
    se = "    -" if e.stderr is None else f"{_r(e.stderr):5.3f}"
    return f"{_r(e.value):7.3f} ± {se}"


def _ci(e: Estimate) -> str:
    if e.ci is None:
        return " " * 17
    return f"[{_r(e.ci[0]):6.3f}, {_r(e.ci[1]):6.3f}]"


def _transformation(e: Estimate) -> str:
    return str(e.params.get("transformation", ""))


def _render(header: Sequence[str], rows: list[Sequence[str]]) -> str:
    """Left-aligned text columns separated by two spaces."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(header)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def _flags(report: Report) -> list[str]:
    return [f"! {f['message']}" for f in report.extra.get("flags", [])]


# ======================================================================= text tables
def format_table(report: Report, *, title: str | None = None) -> str:
    """One row per estimate: quantity, method, value ± stderr, 95 % CI, n (nats)."""
    several = len({_transformation(e) for e in report.estimates}) > 1
    header = (["transformation"] if several else []) + [
        "quantity", "method", "value ± stderr (nats)", "95% CI", "n"]
    rows, last = [], None
    for e in report.estimates:
        q = e.quantity if e.quantity != last else ""
        last = e.quantity
        rows.append(([_transformation(e)] if several else [])
                    + [q, e.method, _value_pm(e), _ci(e), str(e.n)])
    out = [title] if title else []
    out += [_describe(report), _render(header, rows)]
    out += _flags(report)
    return "\n".join(out)


def _describe(report: Report) -> str:
    p = report.provenance
    bits = []
    if report.checkpoint:
        ep = p.get("epoch")
        bits.append(f"{p.get('source', 'checkpoint')}: {report.checkpoint}"
                    + (f" (epoch {ep})" if ep is not None else ""))
    if report.dataset:
        split = p.get("split")
        bits.append(f"dataset: {report.dataset}" + (f" ({split})" if split else ""))
    if "n_images" in p:
        bits.append(f"{p['n_images']} images")
    if "layer" in p:
        bits.append(f"layer: {p['layer']}")
    if "transformations" in p and p["transformations"]:
        bits.append("transformations: " + ",".join(p["transformations"]))
    return "  ".join(bits)


def format_rank_table(report: Report) -> str:
    """The ``rank-transforms`` table: one row per transformation, in rank order."""
    header = ["rank", "transformation", "K", "H(A|X) (nats)", "I(A;C|X) (nats)",
              "95% CI I(A;C|X)", "I(A;C)", "n", "verdict"]
    rows = []
    for r in report.extra.get("ranking", []):
        t = r["transformation"]
        h = _get(report, "H(A|X)", t)
        i = _get(report, "I(A;C|X)", t)
        ac = _get(report, "I(A;C)", t)
        rows.append([str(r["rank"]), t, str(r["n_classes"]),
                     _value_pm(h) if h else "-", _value_pm(i) if i else "-",
                     _ci(i) if i else "-", f"{_r(ac.value, 4):.4f}" if ac else "-",
                     str(i.n if i else ""), r["verdict"]])
    out = [_describe(report), _render(header, rows)]
    reasons = [f"  {r['transformation']}: {r['reason']}" for r in
               report.extra.get("ranking", [])]
    if reasons:
        out += ["verdicts:"] + reasons
    out += _flags(report)
    return "\n".join(out)


def _get(report: Report, quantity: str, transformation: str, method: str | None = None
         ) -> Estimate | None:
    for e in report.estimates:
        if (e.quantity == quantity and _transformation(e) == transformation
                and (method is None or e.method == method)):
            return e
    return None


def _primary(report: Report, quantity: str, transformation: str, method: str | None
             ) -> Estimate | None:
    """The estimate by ``method`` or, for a quantity that method does not estimate (the
    plug-in I(A;C)), the first one."""
    return _get(report, quantity, transformation, method) or _get(report, quantity,
                                                                  transformation)


def run_labels(paths: Sequence[str | None]) -> list[str]:
    """Short labels that tell runs apart: each path's file name, with as many parent
    folders as it takes to make the labels distinct (``a/checkpoint.pt`` and
    ``b/checkpoint.pt`` for two runs' checkpoints; ``epoch1.pt`` alone when names differ)."""
    parts = [Path(p).parts if p else ("?",) for p in paths]
    depth = 1
    while True:
        labels = ["/".join(ps[-depth:]) for ps in parts]
        if len(set(labels)) == len(labels) or depth >= max(len(ps) for ps in parts):
            return labels
        depth += 1


def _row_methods(reports: Sequence[Report], method: str | None) -> list[str | None]:
    """The methods to show one row each: ``[method]`` when given, else every method that
    shares a quantity with another (probe, ross); a method alone on its quantities (the
    plug-in I(A;C)) fills that column in each row instead."""
    if method is not None:
        return [method]
    count: dict[str, set] = {}
    for rep in reports:
        for e in rep.estimates:
            count.setdefault(e.method, set()).add(e.quantity)
    shared = [m for m, qs in count.items()
              if qs & set().union(*(q for o, q in count.items() if o != m))]
    return shared or [None]


def format_runs_table(reports: Sequence[Report], *, method: str | None = None,
                      labels: Sequence[str] | None = None) -> str:
    """Several checkpoints: one row per checkpoint and method, in the order given, labelled
    by ``labels`` (default: :func:`run_labels` of the checkpoints' paths); one column per
    (transformation, quantity). ``method``: show only that method (default: each method
    that estimates several quantities, e.g. the probe and kNN, one row each)."""
    labels = list(labels) if labels is not None else run_labels(
        [r.checkpoint for r in reports])
    columns: list[tuple[str, str]] = []
    for rep in reports:
        for e in rep.estimates:
            key = (_transformation(e), e.quantity)
            if key not in columns:
                columns.append(key)
    several_t = len({t for t, _ in columns}) > 1
    methods = _row_methods(reports, method)
    header = ["run", "epoch"] + (["method"] if methods != [None] else []) + [
        f"{q} [{t}]" if several_t else q for t, q in columns]
    rows = []
    for label, rep in zip(labels, reports):
        for i, m in enumerate(methods):
            row = [label if i == 0 else "", str(rep.provenance.get("epoch", "-"))
                   if i == 0 else ""] + ([m] if methods != [None] else [])
            for t, q in columns:
                e = _primary(rep, q, t, m)
                row.append(_value_pm(e) if e else "-")
            rows.append(row)
    out = [_render(header, rows)]
    for label, rep in zip(labels, reports):
        out += [f"{label}: {m}" for m in _flags(rep)]
    return "\n".join(out)


def _epoch_key(rep: Report) -> tuple:
    ep = rep.provenance.get("epoch")
    return (ep is None, ep if ep is not None else 0, str(rep.checkpoint))


# ============================================================================ JSON/CSV
def to_json(reports: Report | Sequence[Report], *, indent: int | None = 2) -> str:
    """DESIGN §4: one JSON object. A single report prints as ``Report.to_dict()``;
    several print as ``{"reports": [...]}``, one per checkpoint."""
    if isinstance(reports, Report):
        return json.dumps(reports.to_dict(), indent=indent)
    return json.dumps({"reports": [r.to_dict() for r in reports]}, indent=indent)


def csv_rows(reports: Report | Sequence[Report]) -> list[dict]:
    """Long format: one row per estimate, columns ``CSV_COLUMNS``."""
    reports = [reports] if isinstance(reports, Report) else list(reports)
    rows = []
    for rep in reports:
        p = rep.provenance
        for e in rep.estimates:
            rows.append({
                "checkpoint": rep.checkpoint or "", "dataset": rep.dataset or "",
                "epoch": p.get("epoch", ""), "step": p.get("step", ""),
                "layer": e.params.get("layer", p.get("layer", "")),
                "transformation": _transformation(e), "quantity": e.quantity,
                "method": e.method, "value": repr(e.value),
                "stderr": "" if e.stderr is None else repr(e.stderr),
                "ci_low": "" if e.ci is None else repr(e.ci[0]),
                "ci_high": "" if e.ci is None else repr(e.ci[1]), "n": e.n,
            })
    return rows


def write_csv(reports: Report | Sequence[Report], path: str | Path) -> Path:
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise FileNotFoundError(f"--csv: directory {str(path.parent)!r} does not exist")
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        w.writeheader()
        w.writerows(csv_rows(reports))
    return path


# ============================================================================== plots
def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def check_plot_path(path: str | Path) -> Path:
    path = Path(path)
    if not path.parent.exists():
        raise FileNotFoundError(f"--plot: directory {str(path.parent)!r} does not exist")
    if path.suffix.lower() not in {".png", ".pdf", ".svg"}:
        raise ValueError(f"--plot: {str(path)!r} must end in .png, .pdf or .svg")
    return path


def _err(e: Estimate) -> tuple[float, float]:
    """Distances from the value to the ends of its 95 % interval (0 when unknown)."""
    if e.ci is None:
        return 0.0, 0.0
    return max(e.value - e.ci[0], 0.0), max(e.ci[1] - e.value, 0.0)


def plot_report(report: Report, path: str | Path) -> Path:
    """Bar chart: one group of bars per quantity (and transformation), one bar per method,
    95 % intervals as error bars. Values are signed: a negative estimate is drawn below 0."""
    path = check_plot_path(path)
    plt = _pyplot()
    groups: list[tuple[str, str]] = []
    methods: list[str] = []
    for e in report.estimates:
        g = (_transformation(e), e.quantity)
        if g not in groups:
            groups.append(g)
        if e.method not in methods:
            methods.append(e.method)
    several_t = len({t for t, _ in groups}) > 1
    bars = [[e for m in methods if (e := _get(report, q, t, m)) is not None]
            for t, q in groups]
    width = 0.8 / max(len(b) for b in bars)
    colours = {m: f"C{i}" for i, m in enumerate(methods)}
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(groups) + 2), 4.0))
    labelled: set[str] = set()
    for i, ests in enumerate(bars):   # the bars of a group are centred on its tick
        for j, e in enumerate(ests):
            x = i + (j - (len(ests) - 1) / 2) * width
            lo, hi = _err(e)
            ax.bar([x], [e.value], width=width, yerr=[[lo], [hi]], capsize=3,
                   color=colours[e.method],
                   label=None if e.method in labelled else e.method)
            labelled.add(e.method)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{q}\n{t}" if several_t else q for t, q in groups], fontsize=9)
    ax.set_ylabel("nats (95 % CI)")
    ax.set_title(_plot_title(report), fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plot_title(report: Report) -> str:
    name = Path(report.checkpoint).name if report.checkpoint else (report.dataset or "")
    layer = report.provenance.get("layer")
    return name + (f" — {layer} features" if layer else "")


def plot_runs(reports: Sequence[Report], path: str | Path, *, method: str | None = None
              ) -> Path:
    """Several checkpoints of one run: each quantity against the training epoch, with
    its 95 % interval as a band (one panel per quantity)."""
    path = check_plot_path(path)
    plt = _pyplot()
    reports = sorted(reports, key=_epoch_key)
    keys: list[tuple[str, str]] = []
    for rep in reports:
        for e in rep.estimates:
            if (_transformation(e), e.quantity) not in keys:
                keys.append((_transformation(e), e.quantity))
    xs_all = [rep.provenance.get("epoch") for rep in reports]
    use_epoch = all(x is not None for x in xs_all)
    ncol = min(3, len(keys)) or 1
    nrow = math.ceil(len(keys) / ncol) or 1
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.0 * ncol, 2.8 * nrow), squeeze=False)
    for ax, (t, q) in zip(axes.ravel(), keys):
        pts = [(x if use_epoch else i, _primary(rep, q, t, method))
               for i, (x, rep) in enumerate(zip(xs_all, reports))]
        pts = [(x, e) for x, e in pts if e is not None]
        xs = [x for x, _ in pts]
        ax.plot(xs, [e.value for _, e in pts], marker="o")
        if all(e.ci is not None for _, e in pts):
            ax.fill_between(xs, [e.ci[0] for _, e in pts], [e.ci[1] for _, e in pts],
                            alpha=0.25)
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_title(f"{q} [{t}]" if t else q, fontsize=9)
        ax.set_xlabel("epoch" if use_epoch else "checkpoint")
        ax.set_ylabel("nats")
    for ax in axes.ravel()[len(keys):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


__all__ = [
    "CSV_COLUMNS",
    "csv_rows",
    "format_rank_table",
    "format_runs_table",
    "run_labels",
    "format_table",
    "plot_report",
    "plot_runs",
    "to_json",
    "write_csv",
]
