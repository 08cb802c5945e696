"""Label sampling in the transformation branch: each image under m distinct labels, drawn
from the step's generator; all K (no draw) when m >= K."""

import torch

from essl_info.data import all_transformed, get_transformation, sampled_transformed
from essl_info.training.config import TrainConfig
from essl_info.training.trainer import labels_per_image


def test_sampled_labels_are_distinct_and_rows_are_the_transformed_images():
    t = get_transformation("jigsaw4")
    x = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    xs, a, idx = sampled_transformed(x, t, 4, torch.Generator().manual_seed(1))
    assert xs.shape == (20, 1, 16, 16) and a.shape == idx.shape == (20,)
    per_image = a.reshape(4, 5).t()
    assert all(len(set(row.tolist())) == 4 for row in per_image)
    assert int(a.min()) >= 0 and int(a.max()) < 24
    full, fa, fi = all_transformed(x, t)  # row a * n + i holds image i under label a
    torch.testing.assert_close(xs, full[a * 5 + idx], rtol=0, atol=0)
    again = sampled_transformed(x, t, 4, torch.Generator().manual_seed(1))[1]
    assert torch.equal(a, again)
    # over many draws every label appears (not a fixed subset)
    seen = sampled_transformed(x.repeat(40, 1, 1, 1), t, 4,
                               torch.Generator().manual_seed(2))[1]
    assert len(set(seen.tolist())) == 24


def test_small_label_sets_are_carried_whole_without_a_draw():
    t = get_transformation("rotation4")
    x = torch.rand(3, 1, 8, 8)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    got = sampled_transformed(x, t, 4, g)
    assert torch.equal(g.get_state(), state)  # no random numbers consumed
    for u, v in zip(got, all_transformed(x, t)):
        assert torch.equal(u, v)
    cfg = TrainConfig()
    assert labels_per_image(t, cfg) == 4
    assert labels_per_image(get_transformation("jigsaw4"), cfg) == cfg.labels_per_image
