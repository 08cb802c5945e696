"""The invariant-or-equivariant choice: its rule on hand-made verdicts, and the
``rank-transforms --choose`` command."""

from __future__ import annotations

import json

import pytest

from essl_info import cli
from essl_info.diagnostics.choice import choose_roles, format_choices, train_flags
from essl_info.types import Report


def _report(verdicts):
    return Report([], dataset="digits", extra={"ranking": [
        {"rank": i + 1, "transformation": t, "n_classes": 4, "verdict": v, "reason": "r"}
        for i, (t, v) in enumerate(verdicts)]})


def test_rule():
    choices = choose_roles(_report([("rotation4", "synergistic"),
                                    ("blur_sigma", "synergistic"),
                                    ("hflip", "class-irrelevant"),
                                    ("grayscale", "lossless/shortcut"),
                                    ("invert", "uninformative")]))
    roles = {c["transformation"]: (c["role"], c["loss"]) for c in choices}
    assert roles == {"rotation4": ("equivariant", "ce"),
                     "blur_sigma": ("equivariant", "ce+order"),   # scale-valued: order loss
                     "hflip": ("invariant", None), "grayscale": ("invariant", None),
                     "invert": ("invariant", None)}
    assert train_flags(choices) == ["--transforms", "rotation4,blur_sigma", "--invariant",
                                    "hflip,grayscale,invert", "--order-weight", "1"]
    assert "train with: --transforms rotation4,blur_sigma" in format_choices(choices)
    # nothing synergistic: SimCLR with every candidate as an invariance
    only_inv = choose_roles(_report([("hflip", "class-irrelevant")]))
    assert train_flags(only_inv) == ["--lambda", "0", "--invariant", "hflip"]
    with pytest.raises(ValueError, match="rank_transforms report"):
        choose_roles(Report([]))


def test_rule_covers_every_verdict_of_rank_transforms():
    from essl_info.diagnostics.rank import VERDICTS

    names = sorted({v.name for v in VERDICTS})
    ts = ["rotation4", "hflip", "vflip", "invert", "grayscale", "jigsaw4", "blur4"]
    choices = choose_roles(_report(list(zip(ts, names))))
    roles = {c["verdict"]: c["role"] for c in choices}
    assert roles == {v: "equivariant" if v == "synergistic" else "invariant" for v in names}


def test_rank_transforms_choose(capsys):
    assert cli.main(["rank-transforms", "--dataset", "digits", "--transforms", "invert",
                     "--n-images", "150", "--fits", "1", "--json", "--quiet",
                     "--choose"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (role,) = doc["extra"]["choice"]["roles"]
    assert role["transformation"] == "invert" and role["role"] in ("invariant", "equivariant")
    assert role["verdict"] == doc["extra"]["ranking"][0]["verdict"]
