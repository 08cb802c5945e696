"""README truth: the README's `essl-info measure` table and estimator snippet, re-run and
compared number by number (tolerance and regeneration: ``tests/readme_check.py``)."""

import pytest
import readme_check


@pytest.mark.parametrize("block", ["measure", "estimators"])
def test_readme_numbers_are_what_the_code_prints(block):
    problems = readme_check.check(block)
    assert not problems, (f"README.md's {block} block is stale; regenerate it with "
                          f"`python tests/readme_check.py --update`:\n" + "\n".join(problems))


def test_the_comparison_catches_a_changed_number():
    good = ["I(A;Z)    probe     1.083 ± 0.027        [ 1.030,  1.136]  1436"]
    assert readme_check.compare(good, good) == []
    assert readme_check.compare(good, [good[0].replace("1.083", "1.084")]) == []  # 1 unit
    assert readme_check.compare(good, [good[0].replace("1.083", "1.085")])
    assert readme_check.compare(good, [good[0].replace("1436", "1435")])
    assert readme_check.compare(good, [good[0].replace("probe", "ross ")])
    assert readme_check.compare(["checkpoint: /a/x.pt (epoch 20)"],
                                ["checkpoint: /b/x.pt (epoch 20)"]) == []
    # a clone folder with digits in it (CI clones into mktemp folders) is not a number
    assert readme_check.compare(["checkpoint: /work/main/x4.pt (epoch 20)"],
                                ["checkpoint: /tmp/tmp.D0fV4DI0YI/repo/x4.pt (epoch 20)"]) == []
    assert readme_check.compare(["checkpoint: /a/x.pt (epoch 20)"],
                                ["checkpoint: /a/x.pt (epoch 21)"])
