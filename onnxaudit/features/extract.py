"""Streamed feature extraction: chosen feature maps (optionally pooled in-graph) plus logits."""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from onnxaudit.data import Dataset, check_label_order
from onnxaudit.errors import AuditError
from onnxaudit.executors import Executor, OnDone, Task, current, shard_bounds, worker_cache
from onnxaudit.features.runtime import create_session
from onnxaudit.model import PreparedModel
from onnxaudit.model import passes as rewrite

LOGITS = "logits"
SAMPLE_FEATURE = "sample_feature"
LABELS = "labels"
BATCH_SIZE = 128


@dataclass(frozen=True)
class Graph:
    """The rewritten classifier as bytes (a worker builds its own session from them) and how to
    read its outputs."""

    model: bytes
    input_name: str
    input_shape: tuple[int, ...]
    outputs: dict[str, str]  # output key -> tensor name
    regional: tuple[str, ...]  # keys pooled in-graph, (N, G, G, C) -> (N, R, C)
    dtype: type

    def run(self, session, x: np.ndarray) -> dict[str, np.ndarray]:
        """The outputs of one batch `x` on `session`, a session of this graph."""
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise AuditError(
                f"images of shape {tuple(x.shape[1:])} do not match the model input "
                f"{self.input_shape}"
            )
        keys = list(self.outputs)
        values = session.run(
            [self.outputs[k] for k in keys], {self.input_name: np.ascontiguousarray(x, np.float32)}
        )
        out = {}
        for key, value in zip(keys, values, strict=True):
            if key == SAMPLE_FEATURE:
                value = value.reshape(len(value), -1)
            elif key in self.regional:
                value = value.reshape(len(value), -1, value.shape[-1])
            out[key] = value.astype(self.dtype, copy=False)
        return out


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
        batch_size: int = BATCH_SIZE,
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
        outputs = {LOGITS: info.logits_name}
        outputs.update(mapping)
        if sample_feature:
            outputs[SAMPLE_FEATURE] = extra_mapping[info.sample_feature_name]
        self.model = model
        self.layers = names
        self.grid = grid
        self.batch_size = info.fixed_batch or batch_size
        self.dtype = np.float16 if float16 else np.float32
        self.graph = Graph(
            proto.SerializeToString(),
            info.input_name,
            tuple(info.input_shape),
            outputs,
            tuple(names) if grid is not None else (),
            self.dtype,
        )
        self.device = device
        self.threads = threads

    @cached_property
    def _session(self):
        """Built on first use: a run cut into shards needs none here, only on its workers."""
        return create_session(self.graph.model, device=self.device, threads=self.threads)

    def iter_batches(self, x: np.ndarray) -> Iterator[dict[str, np.ndarray]]:
        """One dict of outputs per batch of `x` (N, C, H, W) float32 in [0, 1]."""
        return _batches(self.graph, self._session, x, self.batch_size)

    def transform(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """All outputs for `x`, concatenated over batches."""
        return _concatenate(list(self.iter_batches(x)))

    def transform_sharded(
        self, x: np.ndarray, executor: Executor | None = None, on_done: OnDone | None = None
    ) -> dict[str, np.ndarray]:
        """`transform(x)`, cut into data shards of whole batches when `executor` has more than
        one slot (each worker runs its own session of the graph), put back in shard order, so
        the arrays are those of one pass; `on_done` sees each finished shard."""
        executor = executor or current()
        if executor.slots == 1:
            out = self.transform(x)
            if on_done is not None:
                on_done(1, 1)
            return out
        graph, threads = executor.share(self.graph), executor.threads(self.threads)
        tasks = [
            Task(
                f"features images {a}..{b - 1}",
                extract_shard,
                (graph, x[a:b], self.batch_size, self.device, threads),
            )
            for a, b in shard_bounds(len(x), executor.slots, self.batch_size)
        ]
        return _concatenate(executor.run(tasks, on_done))

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
        return self.graph.run(self._session, x)


def extract_shard(
    graph: Graph, x: np.ndarray, batch_size: int, device: str, threads: int | None
) -> dict[str, np.ndarray]:
    """The outputs of one data shard (the unit of work of distributed extraction), on this
    process's own, cached session of `graph`."""

    def build():
        return create_session(graph.model, device=device, threads=threads)

    session = worker_cache("features", graph.model, (device, threads), build)
    return _concatenate(list(_batches(graph, session, x, batch_size)))


def _batches(graph: Graph, session, x: np.ndarray, batch_size: int) -> Iterator[dict]:
    for start in range(0, len(x), batch_size):
        yield graph.run(session, x[start : start + batch_size])


def _concatenate(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Batches (or shards) of outputs joined in order."""
    if not parts:
        raise AuditError("no images to extract features from")
    if len(parts) == 1:  # no copy: the arrays onnxruntime returned
        return parts[0]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


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
