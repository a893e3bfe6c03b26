"""Labels that match the model: numeric class folders, the printed mapping, near-chance warnings."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from onnxaudit.checks import check_enough_images
from onnxaudit.data import check_label_order, load_dataset
from onnxaudit.errors import AuditError
from onnxaudit.settings import Settings


def class_folders(root, names):
    for k, name in enumerate(names):
        folder = root / name
        folder.mkdir(parents=True)
        Image.fromarray(np.full((4, 4), 40 * k, np.uint8)).save(folder / "img.png")
    return root


def test_numeric_class_folders_are_ordered_numerically(tmp_path):
    data = load_dataset(class_folders(tmp_path / "rot", ["270", "0", "180", "90"]))
    assert data.classes == ["0", "90", "180", "270"] and data.class_order == "numeric"
    assert data.label_mapping() == {"0": 0, "90": 1, "180": 2, "270": 3}
    assert data.describe_labels() == "labels 0=0, 1=90, 2=180, 3=270 (numeric order)"
    assert data.identity()["class_order"] == "numeric"
    # folders 270, 0, 180, 90 hold grey levels 0, 40, 80, 120: each image keeps its folder's label
    grey = np.round(data.images((1, 4, 4))[:, 0, 0, 0] * 255).astype(int).tolist()
    assert dict(zip(grey, data.labels.tolist(), strict=True)) == {0: 3, 40: 0, 80: 2, 120: 1}


def test_other_class_folders_are_alphabetical(tmp_path):
    data = load_dataset(class_folders(tmp_path / "pets", ["dog", "10", "cat"]))
    assert data.classes == ["10", "cat", "dog"] and data.class_order == "alphabetical"


def test_near_chance_accuracy_warns_about_the_label_order():
    labels = np.repeat(np.arange(4), 10)
    permuted = (labels + 1) % 4  # a model that is right, scored against shifted labels
    warning = check_label_order(permuted, labels, ["0", "180", "270", "90"])
    assert warning is not None and "near chance" in warning and "0=0, 1=180" in warning
    assert check_label_order(labels, labels) is None
    mostly_right = labels.copy()
    mostly_right[::4] = 0
    assert check_label_order(mostly_right, labels) is None


def test_single_class_data_is_refused_by_analyses_that_need_several(tmp_path):
    np.savez(tmp_path / "one.npz", x=np.zeros((5, 4, 4), np.uint8), y=np.zeros(5, np.int64))
    data = load_dataset(tmp_path / "one.npz")
    with pytest.raises(AuditError, match="patterns needs images of at least 2 classes"):
        check_enough_images(data, Settings().only("patterns"))
    check_enough_images(data, Settings().only("robustness"))  # PGD needs one class only
