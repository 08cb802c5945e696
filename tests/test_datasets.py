"""Datasets: the ImageDataset container, the registry, digits, the CIFAR reader on fake
archives in the real format (Python-2 pickles in a tarball) and the image-folder reader."""

from __future__ import annotations

import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from essl_info.data import DATASETS, ImageDataset, load_dataset, register_dataset
from essl_info.data.datasets import channel_stats
from essl_info.errors import DataError

# ----------------------------------------------------------------------------- registry, container


def test_registry_lists_the_designed_datasets():
    assert {"digits", "rotation-world", "cifar10", "cifar100", "folder"} <= set(DATASETS)


def test_unknown_name_split_size_and_knob():
    with pytest.raises(DataError, match="unknown dataset 'mnist'; known: .*digits"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="split must be one of"):
        load_dataset("digits", split="val")
    with pytest.raises(DataError, match="image_size must be a positive integer"):
        load_dataset("digits", image_size=0)
    with pytest.raises(DataError, match=r"unknown parameter\(s\) eps"):
        load_dataset("digits", eps=0.1)
    with pytest.raises(DataError, match="needs data_dir"):
        load_dataset("cifar10")
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("digits", description="", default_image_size=8)(lambda **kw: None)


def _tiny(n=4, c=2):
    return ImageDataset("t", torch.rand(n, c, 3, 3), torch.arange(n) % 2, 2, "train",
                        (0.5,) * c, (0.2,) * c, {"name": "t"},
                        {"z": torch.arange(n)})


def test_container_validation_and_subset():
    ds = _tiny()
    assert len(ds) == 4 and ds.channels == 2 and ds.image_size == 3
    for idx in ([2, 0], np.array([2, 0]), torch.tensor([2, 0])):
        sub = ds.subset(idx)
        assert torch.equal(sub.images, ds.images[[2, 0]]) and torch.equal(sub.latents["z"], torch.tensor([2, 0]))
        assert sub.params == ds.params and sub.mean == ds.mean
    assert len(ds.subset(slice(1, 3))) == 2
    assert len(ds.subset(torch.tensor([True, False, True, True]))) == 3
    with pytest.raises(DataError, match="out of range"):
        ds.subset([4])
    with pytest.raises(DataError, match="must be integers"):
        ds.subset([0.5])
    norm = ds.normalized()
    assert torch.allclose(norm, (ds.images - 0.5) / 0.2)
    with pytest.raises(DataError, match="labels must lie in 0..1"):
        ImageDataset("t", torch.rand(2, 1, 3, 3), torch.tensor([0, 2]), 2, "train", (0.0,), (1.0,))
    with pytest.raises(DataError, match="float32"):
        ImageDataset("t", torch.rand(2, 1, 3, 3).double(), torch.tensor([0, 1]), 2, "train", (0.0,), (1.0,))
    with pytest.raises(DataError, match="one value per channel"):
        ImageDataset("t", torch.rand(2, 3, 3, 3), torch.tensor([0, 1]), 2, "train", (0.0,), (1.0,))


def test_channel_stats_against_numpy():
    x = torch.rand(10, 3, 5, 5)
    mean, std = channel_stats(x, chunk=3)
    arr = x.double().numpy()
    np.testing.assert_allclose(mean, arr.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, arr.std(axis=(0, 2, 3)), rtol=1e-9)


# ----------------------------------------------------------------------------------------- digits


def test_digits_split_is_stratified_disjoint_and_complete():
    from sklearn.datasets import load_digits

    raw = load_digits()
    tr = load_dataset("digits", image_size=8)  # native size: no resampling
    te = load_dataset("digits", image_size=8, split="test")
    assert tr.images.shape == (1438, 1, 8, 8) and te.images.shape == (359, 1, 8, 8)
    assert tr.channels == 1 and tr.n_classes == 10 and tr.class_names[3] == "3"
    ours = sorted(map(tuple, torch.cat([tr.images, te.images]).flatten(1).mul(16).round().int().tolist()))
    theirs = sorted(map(tuple, raw.data.astype(int).tolist()))
    assert ours == theirs  # every image exactly once across the two splits
    assert torch.equal(torch.cat([tr.labels, te.labels]).bincount(),
                       torch.from_numpy(np.bincount(raw.target)))
    frac = te.labels.bincount().double() / torch.from_numpy(np.bincount(raw.target)).double()
    assert ((frac - 0.2).abs() < 0.02).all()
    assert tr.mean == te.mean  # test normalises with the train statistics
    assert tr.mean[0] == pytest.approx(float(tr.images.double().mean()), rel=1e-9)


def test_digits_default_size_reproducible_and_seeded():
    a = load_dataset("digits")
    assert a.images.shape == (1438, 1, 32, 32) and a.images.dtype == torch.float32
    assert 0 <= float(a.images.min()) and float(a.images.max()) <= 1
    b = load_dataset(**a.params)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    c = load_dataset("digits", seed=1)
    assert not torch.equal(a.labels, c.labels)


# ------------------------------------------------------------------- CIFAR: fake archives, real format


class Py2Pickler(pickle._Pickler):
    """Writes byte strings as Python 2 ``str`` (BINSTRING), as the real CIFAR files do."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    # the real files name numpy's reconstructor by its numpy-1 path
    return buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def fake_batch(n, n_classes, seed, label_key="labels", extra=None):
    rng = np.random.default_rng(seed)
    d = {b"batch_label": b"fake batch", b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
         label_key.encode(): [int(v) for v in rng.integers(0, n_classes, n)],
         b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
    d.update(extra or {})
    return d


def write_tar(path: Path, folder: str, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture()
def cifar10_dir(tmp_path):
    batches = {f"data_batch_{i}": fake_batch(6, 10, i) for i in range(1, 6)}
    batches["test_batch"] = fake_batch(4, 10, 9)
    members = {k: py2_pickle(v) for k, v in batches.items()}
    members["batches.meta"] = py2_pickle({b"label_names": [f"class{i}".encode() for i in range(10)],
                                          b"num_cases_per_batch": 6, b"num_vis": 3072})
    write_tar(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py", members)
    return tmp_path, batches


def test_cifar10_tarball_round_trip(cifar10_dir):
    root, batches = cifar10_dir
    tr = load_dataset("cifar10", data_dir=root)
    te = load_dataset("cifar10", data_dir=str(root), split="test")
    data = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    labels = sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert tr.images.shape == (30, 3, 32, 32) and te.images.shape == (4, 3, 32, 32)
    assert tr.labels.tolist() == labels and te.labels.tolist() == batches["test_batch"][b"labels"]
    # channel-major layout: data[i, c*1024 + r*32 + col] is pixel (c, r, col)
    i, c, r, col = 7, 2, 5, 30
    assert float(tr.images[i, c, r, col]) == pytest.approx(data[i, c * 1024 + r * 32 + col] / 255)
    assert torch.equal((tr.images * 255).round().to(torch.uint8).reshape(30, 3072), torch.from_numpy(data))
    assert tr.class_names == tuple(f"class{i}" for i in range(10))
    np.testing.assert_allclose(tr.mean, (data.reshape(30, 3, -1) / 255).mean(axis=(0, 2)), rtol=1e-9)
    assert te.mean == tr.mean and te.n_classes == 10
    again = load_dataset(**tr.params)
    assert torch.equal(again.images, tr.images)
    small = load_dataset("cifar10", data_dir=root, image_size=16)
    assert small.images.shape == (30, 3, 16, 16)


def test_cifar10_extracted_folder(cifar10_dir):
    root, _ = cifar10_dir
    with tarfile.open(root / "cifar-10-python.tar.gz") as tar:
        tar.extractall(root / "x", filter="data")
    a = load_dataset("cifar10", data_dir=root / "x")
    b = load_dataset("cifar10", data_dir=root / "x" / "cifar-10-batches-py")
    c = load_dataset("cifar10", data_dir=root)
    assert torch.equal(a.images, c.images) and torch.equal(b.labels, c.labels)


def test_cifar100_fine_and_coarse(tmp_path):
    meta = {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"c{i}".encode() for i in range(20)]}
    train = fake_batch(12, 100, 1, "fine_labels", {b"coarse_labels": [i % 20 for i in range(12)]})
    test = fake_batch(5, 100, 2, "fine_labels", {b"coarse_labels": [3] * 5})
    write_tar(tmp_path / "cifar-100-python.tar.gz", "cifar-100-python",
              {"train": py2_pickle(train), "test": py2_pickle(test), "meta": py2_pickle(meta)})
    fine = load_dataset("cifar100", data_dir=tmp_path)
    coarse = load_dataset("cifar100", data_dir=tmp_path, split="test", labels="coarse_labels")
    assert fine.n_classes == 100 and fine.labels.tolist() == train[b"fine_labels"]
    assert coarse.n_classes == 20 and coarse.labels.tolist() == [3] * 5
    assert coarse.class_names[3] == "c3" and coarse.params["labels"] == "coarse_labels"
    with pytest.raises(DataError, match="labels must be one of"):
        load_dataset("cifar100", data_dir=tmp_path, labels="superclass")


def test_cifar_missing_files_message(tmp_path):
    with pytest.raises(DataError, match=r"cifar10: no cifar-10-python.tar.gz or "
                                        r"cifar-10-batches-py in .*download"):
        load_dataset("cifar10", data_dir=tmp_path)


class _Evil:
    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_cifar_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.target = str(marker)
    batch = fake_batch(2, 10, 0)
    batch[b"data"] = evil
    members = {f"data_batch_{i}": pickle.dumps(batch, protocol=2) for i in range(1, 6)}
    write_tar(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py", members)
    with pytest.raises(DataError, match=r"refusing to unpickle posix.mkdir|refusing to unpickle os.mkdir"):
        load_dataset("cifar10", data_dir=tmp_path)
    assert not marker.exists()


def test_cifar_truncated_archive_is_refused(cifar10_dir):
    root, _ = cifar10_dir
    path = root / "cifar-10-python.tar.gz"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match="cifar10: cannot read"):
        load_dataset("cifar10", data_dir=root)


def test_cifar_wrong_content_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(py2_pickle({b"data": np.zeros((2, 10), np.uint8),
                                                             b"labels": [0, 1]}))
    with pytest.raises(DataError, match=r"uint8 \(n, 3072\)"):
        load_dataset("cifar10", data_dir=tmp_path)
    (folder / "data_batch_1").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="not a readable CIFAR batch"):
        load_dataset("cifar10", data_dir=tmp_path)


# ----------------------------------------------------------------------------------------- folder


def make_folder(root: Path, counts: dict[str, int], seed=0) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    made: dict[str, list[np.ndarray]] = {}
    modes = ["RGB", "L", "RGBA", "P"]
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True)
        made[cls] = []
        for i in range(n):
            arr = rng.integers(0, 256, (10 + i, 12, 3), dtype=np.uint8)
            img = Image.fromarray(arr).convert(modes[i % 4])
            img.save(root / cls / f"{i:03d}.png")
            made[cls].append(np.asarray(img.convert("RGB")))
    return made


def test_folder_reader(tmp_path):
    made = make_folder(tmp_path, {"tulip": 5, "apple": 10, "fig": 5})
    (tmp_path / "apple" / "readme.txt").write_text("not an image")
    tr = load_dataset("folder", data_dir=tmp_path, image_size=12)
    te = load_dataset("folder", data_dir=tmp_path, image_size=12, split="test")
    assert tr.class_names == ("apple", "fig", "tulip") and tr.n_classes == 3
    assert len(tr) == 16 and len(te) == 4
    assert te.labels.bincount(minlength=3).tolist() == [2, 1, 1]
    assert tr.images.shape == (16, 3, 12, 12) and tr.mean == te.mean
    # resizing is Pillow's bilinear: compare one image with Pillow directly
    want = np.asarray(Image.fromarray(made["fig"][0]).resize((12, 12), Image.BILINEAR))
    pool = torch.cat([tr.images, te.images]).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert any(np.array_equal(p, want) for p in pool)
    again = load_dataset(**tr.params)
    assert torch.equal(again.images, tr.images)
    other = load_dataset("folder", data_dir=tmp_path, image_size=12, seed=5)
    assert not torch.equal(other.images, tr.images)
    capped = load_dataset("folder", data_dir=tmp_path, image_size=8, max_per_class=5, test_fraction=0.4)
    assert len(capped) == 9


def test_folder_with_train_and_test_subfolders(tmp_path):
    make_folder(tmp_path / "Training", {"a": 2, "b": 3})
    make_folder(tmp_path / "Test", {"b": 1}, seed=1)
    te = load_dataset("folder", data_dir=tmp_path, split="test", image_size=8)
    assert len(te) == 1 and te.labels.tolist() == [1] and te.class_names == ("a", "b")


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="is not a directory"):
        load_dataset("folder", data_dir=tmp_path / "nope")
    with pytest.raises(DataError, match="no class sub-folders"):
        load_dataset("folder", data_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no images"):
        load_dataset("folder", data_dir=tmp_path)
    (tmp_path / "empty" / "bad.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read image"):
        load_dataset("folder", data_dir=tmp_path, test_fraction=0.5)
