"""Data loaders: every accepted format gives the same NCHW [0, 1] images and labels."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from onnxaudit.data import load_dataset
from onnxaudit.errors import AuditError

RNG = np.random.default_rng(0)
X = RNG.integers(0, 256, (12, 6, 6), dtype=np.uint8)
Y = np.arange(12) % 3


def write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_npz_formats_agree(tmp_path):
    expected = X[:, None].astype(np.float32) / 255
    variants = {
        "hw": X,
        "hwc": X[..., None],
        "chw": X[:, None],
        "float": X.astype(np.float32) / 255,
    }
    for name, x in variants.items():
        np.savez(tmp_path / f"{name}.npz", x=x, y=Y, classes=np.array(["a", "b", "c"]))
        data = load_dataset(tmp_path / f"{name}.npz")
        assert data.classes == ["a", "b", "c"] and len(data) == 12
        np.testing.assert_allclose(data.images((1, 6, 6)), expected, atol=1e-6)


def test_idx_files_and_folder(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", X)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", Y)
    from_folder = load_dataset(tmp_path)
    from_file = load_dataset(tmp_path / "t10k-images-idx3-ubyte.gz")
    for data in (from_folder, from_file):
        np.testing.assert_array_equal(data.labels, Y)
        np.testing.assert_allclose(data.images((1, 6, 6))[:, 0], X / 255, atol=1e-6)


def test_class_folders_resize_and_colour(tmp_path):
    for label in range(3):
        folder = tmp_path / "imgs" / f"class_{label}"
        folder.mkdir(parents=True)
        for i in np.flatnonzero(Y == label):
            Image.fromarray(X[i]).save(folder / f"{i:02d}.png")
    data = load_dataset(tmp_path / "imgs")
    assert data.classes == ["class_0", "class_1", "class_2"]
    grey = data.images((1, 6, 6))
    order = np.concatenate([np.flatnonzero(Y == c) for c in range(3)])
    np.testing.assert_allclose(grey[:, 0], X[order] / 255, atol=1e-6)
    rgb = data.images((3, 12, 12))
    assert rgb.shape == (12, 3, 12, 12) and np.allclose(rgb[:, 0], rgb[:, 2])
    assert 0.0 <= rgb.min() and rgb.max() <= 1.0


def test_subset_is_stratified_and_deterministic(tmp_path):
    np.savez(tmp_path / "d.npz", x=X, y=Y)
    data = load_dataset(tmp_path / "d.npz")
    a, b, c = data.subset(2, seed=7), data.subset(2, seed=7), data.subset(2, seed=8)
    assert len(data.subset(100, seed=0)) == 12
    assert np.bincount(a.labels).tolist() == [2, 2, 2]
    np.testing.assert_array_equal(a.array, b.array)
    assert {tuple(sorted(s.labels)) for s in (a, c)} == {(0, 0, 1, 1, 2, 2)}
    batches = list(data.batches(5, (1, 6, 6)))
    assert [len(y) for _, y in batches] == [5, 5, 2]


def test_a_subset_keeps_its_rest_and_fresh_subsets_are_disjoint(tmp_path):
    np.savez(tmp_path / "d.npz", x=X, y=Y)
    data = load_dataset(tmp_path / "d.npz")  # 4 images of each of 3 classes
    part = data.subset(1, seed=3)
    assert len(part.rest) == 9 and np.bincount(part.rest.labels).tolist() == [3, 3, 3]
    fresh = part.fresh_subset(seed=5)
    assert np.bincount(fresh.labels).tolist() == [1, 1, 1] and len(fresh.rest) == 6
    assert part._source is data and fresh._source is data  # indices into the source, no copies
    seen = {a.tobytes() for a in part.array}
    assert not seen & {a.tobytes() for a in fresh.array}  # X's images are all distinct
    np.testing.assert_array_equal(part.fresh_subset(seed=5).array, fresh.array)  # seeded
    assert data.subset(2, seed=3).fresh_subset(seed=0) is not None  # 2 + 2 of 4
    assert data.subset(3, seed=3).fresh_subset(seed=0) is None  # 1 left per class: too few
    assert data.fresh_subset(seed=0) is None  # a whole data set has no rest
    assert data.subset(4, seed=0).rest is None


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.npz", "no such file"),
        (lambda p: (np.savez(p / "bad.npz", a=X), p / "bad.npz")[1], "needs arrays 'x' and 'y'"),
        (lambda p: (np.savez(p / "n.npz", x=X, y=Y[:5]), p / "n.npz")[1], "12 images but 5 labels"),
        (
            lambda p: (np.savez(p / "f.npz", x=X.astype(np.float32), y=Y), p / "f.npz")[1],
            "must lie in",
        ),
        (lambda p: ((p / "e").mkdir(), p / "e")[1], "one sub-folder of images per class"),
    ],
)
def test_bad_data_is_one_clear_error(tmp_path, make, message):
    with pytest.raises(AuditError, match=message):
        load_dataset(make(tmp_path))


def test_unreadable_image_names_the_file(tmp_path):
    folder = tmp_path / "imgs" / "a"
    folder.mkdir(parents=True)
    (folder / "broken.png").write_bytes(b"not a png")
    data = load_dataset(tmp_path / "imgs")
    with pytest.raises(AuditError, match="broken.png: unreadable image"):
        data.images((1, 6, 6))
