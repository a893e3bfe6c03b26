"""Streamed feature extraction: chosen feature maps (optionally pooled in-graph) plus logits."""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from onnxaudit.data import Dataset, check_label_order
from onnxaudit.errors import AuditError
from onnxaudit.features.runtime import create_session
from onnxaudit.model import PreparedModel
from onnxaudit.model import passes as rewrite

LOGITS = "logits"
SAMPLE_FEATURE = "sample_feature"
LABELS = "labels"


class FeatureExtractor:
    """Runs a classifier rewritten so the chosen tensors are extra outputs, batch by batch.

    With `grid`, each map is average-pooled on the device to at most grid x grid positions and
    returned as regional features (N, R, C); otherwise full-resolution NCHW maps are returned.
    """

    def __init__(
        self,
        model: PreparedModel,
        layers: Sequence[str] = (),
        grid: int | None = None,
        sample_feature: bool = False,
        device: str = "auto",
        threads: int | None = None,
        batch_size: int = 128,
        float16: bool = False,
    ) -> None:
        info = model.info
        chosen = [info.layer(name) for name in layers]
        if grid is not None and grid < 1:
            raise AuditError(f"--grid must be at least 1, got {grid}")
        if sample_feature and info.sample_feature_name is None:
            raise AuditError(
                "the model has no Gemm/MatMul classifier: no sample feature", model.path
            )
        names = [layer.name for layer in chosen]
        proto, mapping = rewrite.expose_tensors(
            model.proto,
            names,
            layouts={layer.name: layer.layout for layer in chosen},
            grid=grid,
            shapes={layer.name: (layer.channels, layer.height, layer.width) for layer in chosen},
        )
        extra = [info.sample_feature_name] if sample_feature else []
        proto, extra_mapping = rewrite.expose_tensors(proto, extra)
        self._outputs = {LOGITS: info.logits_name}
        self._outputs.update(mapping)
        if sample_feature:
            self._outputs[SAMPLE_FEATURE] = extra_mapping[info.sample_feature_name]
        self.model = model
        self.layers = names
        self.grid = grid
        self.batch_size = info.fixed_batch or batch_size
        self.dtype = np.float16 if float16 else np.float32
        self._input = info.input_name
        self._session = create_session(proto, device=device, threads=threads)

    def iter_batches(self, x: np.ndarray) -> Iterator[dict[str, np.ndarray]]:
        """One dict of outputs per batch of `x` (N, C, H, W) float32 in [0, 1]."""
        for start in range(0, len(x), self.batch_size):
            yield self._run(x[start : start + self.batch_size])

    def transform(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """All outputs for `x`, concatenated over batches."""
        parts = list(self.iter_batches(x))
        if not parts:
            raise AuditError("no images to extract features from")
        if len(parts) == 1:  # no copy: the arrays onnxruntime returned
            return parts[0]
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    def extract_to_npz(
        self,
        dataset: Dataset,
        path: str | Path,
        on_batch: Callable[[int], None] | None = None,
    ) -> dict[str, tuple[int, ...]]:
        """Stream `dataset` through the model into an uncompressed `.npz` at `path`.

        Each array is written to a memory-mapped `.npy` as batches arrive, so neither the data set
        nor the features are ever held in memory whole; the archive is renamed into place only
        when complete. Returns the shape of every stored array.
        """
        path = Path(path)
        shape = self.model.info.input_shape
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".extract-") as tmp:
            arrays: dict[str, np.memmap] = {}
            start = 0
            for x, y in dataset.batches(self.batch_size, shape):
                outputs = self._run(x)
                outputs[LABELS] = y
                for key, value in outputs.items():
                    if key not in arrays:
                        arrays[key] = np.lib.format.open_memmap(
                            os.path.join(tmp, f"{len(arrays)}.npy"),
                            mode="w+",
                            dtype=value.dtype,
                            shape=(len(dataset), *value.shape[1:]),
                        )
                    arrays[key][start : start + len(x)] = value
                start += len(x)
                if on_batch:
                    on_batch(len(x))
            shapes = {key: arr.shape for key, arr in arrays.items()}
            for arr in arrays.values():
                arr.flush()
            del arrays
            partial = Path(tmp) / "features.npz"
            with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                for i, key in enumerate(shapes):
                    # ZipInfo keeps tensor names such as "/features/Conv_output_0" verbatim.
                    entry = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                    with open(os.path.join(tmp, f"{i}.npy"), "rb") as src:
                        with archive.open(entry, "w", force_zip64=True) as dst:
                            shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(partial, path)
        return shapes

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.model.info.input_shape):
            raise AuditError(
                f"images of shape {tuple(x.shape[1:])} do not match the model input "
                f"{tuple(self.model.info.input_shape)}"
            )
        keys = list(self._outputs)
        values = self._session.run(
            [self._outputs[k] for k in keys], {self._input: np.ascontiguousarray(x, np.float32)}
        )
        out = {}
        for key, value in zip(keys, values, strict=True):
            if key == SAMPLE_FEATURE:
                value = value.reshape(len(value), -1)
            elif self.grid is not None and key in self.layers:  # (N, G, G, C) -> (N, R, C)
                value = value.reshape(len(value), -1, value.shape[-1])
            out[key] = value.astype(self.dtype, copy=False)
        return out


def predict_classes(
    model: PreparedModel, x: np.ndarray, device: str = "auto", threads: int | None = None
) -> np.ndarray:
    """The model's predicted class for each image of `x` (N, C, H, W) in [0, 1]."""
    return FeatureExtractor(model, device=device, threads=threads).transform(x)[LOGITS].argmax(1)


def label_order_warning(
    model: PreparedModel,
    dataset: Dataset,
    per_class: int = 20,
    seed: int = 0,
    device: str = "auto",
    threads: int | None = None,
) -> str | None:
    """Clean accuracy on a stratified subset; a warning string when it is near chance."""
    sub = dataset.subset(per_class, seed)
    predictions = predict_classes(model, sub.images(model.info.input_shape), device, threads)
    return check_label_order(predictions, sub.labels, sub.classes)
