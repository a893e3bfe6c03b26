"""Where the units of work run: in this process (the default, Dask never imported) or on Dask.

A unit of work (`Task`) is a module-level function of plain arguments (model bytes, a class or
data shard, settings, a spawned seed) returning plain results. An executor runs a list of tasks
and returns their results in the order of the list, so an answer never depends on where, or in
which order, the shards ran. onnxruntime sessions cannot be pickled: tasks build them from the
model bytes on the worker and keep them in a small per-process cache (`worker_cache`).
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np

from onnxaudit.errors import AuditError

if TYPE_CHECKING:
    from onnxaudit.settings import Settings

EXTRA = "pip install 'onnxaudit[distributed]'"
RETRIES = 2  # a shard whose worker died (or that raised) is tried this many more times
CACHE_SIZE = 4  # sessions kept per process: a few models x purposes
T = TypeVar("T")
OnDone = Callable[[int, int], None]


class ShardFailed(AuditError):
    """A shard failed on every try: the run stops, naming the shard and the last reason."""

    def __init__(self, shard: str, reason: str) -> None:
        super().__init__(f"shard {shard!r} failed after {RETRIES + 1} tries: {reason}")
        self.shard = shard


@dataclass(frozen=True)
class Task:
    """One unit of work: `fn(*args)`; `local` are extra keyword arguments given only when it
    runs in this process (progress callbacks, which cannot travel to a worker)."""

    name: str
    fn: Callable[..., object]
    args: tuple = ()
    local: Mapping[str, object] = field(default_factory=dict)


class Executor(Protocol):
    """Runs tasks; `slots` is how many run at once (the number of shards worth cutting)."""

    slots: int

    def threads(self, requested: int | None) -> int | None: ...

    def share(self, value: T) -> T: ...

    def run(self, tasks: Sequence[Task], on_done: OnDone | None = None) -> list: ...


class InProcess:
    """Runs every task here, one after the other, exactly as a plain function call."""

    slots = 1

    def threads(self, requested: int | None) -> int | None:
        return requested  # None: onnxruntime's default, all cores

    def share(self, value: T) -> T:
        return value

    def run(self, tasks: Sequence[Task], on_done: OnDone | None = None) -> list:
        results = []
        for done, task in enumerate(tasks, start=1):
            results.append(task.fn(*task.args, **task.local))
            if on_done is not None:
                on_done(done, len(tasks))
        return results


class DaskExecutor:
    """Runs tasks on a Dask cluster through `client`: one task per worker process at a time,
    retried when it fails or its worker dies, results gathered in the order of the tasks."""

    def __init__(self, client: object, threads_per_task: int = 1) -> None:
        self.client = client
        self.threads_per_task = threads_per_task

    @property
    def slots(self) -> int:
        return max(1, len(self.client.scheduler_info()["workers"]))

    def threads(self, requested: int | None) -> int | None:
        # onnxruntime ignores OMP_*: without an explicit count each worker would take all cores
        return requested or self.threads_per_task

    def share(self, value: T) -> T:
        """Send a large argument (model bytes, images) to every worker once; under a key of its
        own (a content-hashed key is released by an earlier share of the same bytes)."""
        return self.client.scatter(value, broadcast=True, hash=False)

    def run(self, tasks: Sequence[Task], on_done: OnDone | None = None) -> list:
        from distributed import as_completed

        futures = [
            self.client.submit(task.fn, *task.args, retries=RETRIES, pure=False, key=_key(task))
            for task in tasks
        ]
        names = {future.key: task.name for future, task in zip(futures, tasks, strict=True)}
        try:
            for done, future in enumerate(as_completed(futures), start=1):
                if future.status == "error":
                    raise ShardFailed(names[future.key], _reason(future.exception()))
                if future.status != "finished":
                    raise ShardFailed(names[future.key], f"its future was {future.status}")
                if on_done is not None:
                    on_done(done, len(tasks))
            return self.client.gather(futures)
        except BaseException:  # a failed shard or Ctrl-C: nothing else keeps running
            self.client.cancel(futures)
            raise


def _key(task: Task) -> str:
    import uuid

    return f"onnxaudit {task.name} {uuid.uuid4().hex[:8]}"


def _reason(exc: BaseException | None) -> str:
    text = str(exc).strip().splitlines()[0] if exc is not None and str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


IN_PROCESS = InProcess()
_current: contextvars.ContextVar[Executor | None] = contextvars.ContextVar(
    "onnxaudit_executor", default=None
)


def current() -> Executor:
    """The executor of the run in progress; in-process outside any run."""
    return _current.get() or IN_PROCESS


@contextmanager
def using(executor: Executor) -> Iterator[Executor]:
    """Make `executor` the current one (a whole audit on a worker runs `using(IN_PROCESS)`)."""
    token = _current.set(executor)
    try:
        yield executor
    finally:
        _current.reset(token)


@contextmanager
def session(settings: Settings) -> Iterator[Executor]:
    """The executor `settings` ask for, for the length of a run: the one already current if a
    run is in progress, else in-process, a local cluster (`workers`) or a scheduler."""
    active = _current.get()
    if active is not None:
        yield active
    elif settings.workers is None and settings.scheduler is None:
        with using(IN_PROCESS) as executor:
            yield executor
    else:
        with dask_client(settings.workers, settings.scheduler, settings.device) as client:
            with using(DaskExecutor(client)) as executor:
                yield executor


def _distributed():
    try:
        import distributed
    except ImportError:
        raise AuditError(f"--workers and --scheduler need Dask distributed: {EXTRA}") from None
    return distributed


@contextmanager
def dask_client(workers: int | None, scheduler: str | None, device: str = "cpu") -> Iterator:
    """A Dask client of an existing scheduler, or of a local cluster of `workers` processes
    (one per GPU with `device="cuda"`), closed at the end."""
    distributed = _distributed()
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise AuditError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None
        with client:
            yield client
        return
    with local_cluster(distributed, int(workers or 1), device) as cluster:
        with distributed.Client(cluster) as client:
            yield client


def local_cluster(distributed, workers: int, device: str = "cpu"):
    """`workers` single-threaded worker processes; with CUDA, dask-cuda's LocalCUDACluster when
    installed (one worker per GPU), else one process per GPU index via CUDA_VISIBLE_DEVICES."""
    quiet = {"dashboard_address": ":0", "silence_logs": logging.ERROR}  # any free port
    if device != "cuda":
        return distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, **quiet
        )
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        return per_gpu_cluster(distributed, workers)
    return LocalCUDACluster(
        n_workers=workers, threads_per_worker=1, CUDA_VISIBLE_DEVICES=list(range(workers)), **quiet
    )


def per_gpu_cluster(distributed, workers: int):
    """A local cluster whose i-th worker process sees only GPU i."""
    specs = {
        i: {
            "cls": distributed.Nanny,
            "options": {"nthreads": 1, "env": {"CUDA_VISIBLE_DEVICES": str(i)}},
        }
        for i in range(workers)
    }
    scheduler = {"cls": distributed.Scheduler, "options": {"dashboard_address": ":0"}}
    return distributed.SpecCluster(workers=specs, scheduler=scheduler, silence_logs=logging.ERROR)


# -- worker side ----------------------------------------------------------------------------------
_CACHE: OrderedDict[tuple, object] = OrderedDict()


def worker_cache(kind: str, model: bytes, options: tuple, build: Callable[[], T]) -> T:
    """What `build()` makes for (kind, model bytes, options), built once per process: tasks that
    land on the same worker reuse its onnxruntime sessions."""
    key = (kind, hashlib.sha256(model).hexdigest(), options)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    value = build()
    _CACHE[key] = value
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value


def numeric_threads() -> dict[str, int]:
    """The BLAS and OpenMP thread counts of this process: a whole audit sent to a worker runs
    under the same counts (`same_numeric_threads`), since they change floating-point sums."""
    import threadpoolctl

    _load_numeric_libraries()
    return {lib["user_api"]: int(lib["num_threads"]) for lib in threadpoolctl.threadpool_info()}


def sender_threads(executor: Executor) -> dict[str, int] | None:
    """The thread counts a task must run under on `executor` to make this process's sums (None
    in-process, where it already does; reading them loads scikit-learn)."""
    return None if isinstance(executor, InProcess) else numeric_threads()


@contextmanager
def same_numeric_threads(counts: Mapping[str, int]) -> Iterator[None]:
    """Run with these BLAS / OpenMP thread counts (Dask starts its workers with 1)."""
    import threadpoolctl

    _load_numeric_libraries()
    with threadpoolctl.threadpool_limits(limits=dict(counts)):
        yield


def _load_numeric_libraries() -> None:
    """Load numpy's, scipy's and scikit-learn's thread pools, so they can be read and set."""
    import scipy.linalg  # noqa: F401
    import sklearn.cluster  # noqa: F401 (its OpenMP pool)


def shard_bounds(n: int, shards: int, align: int = 1) -> list[tuple[int, int]]:
    """At most `shards` contiguous [start, stop) ranges covering range(n), each a multiple of
    `align` long but the last (so data shards keep the batches of an unsharded run)."""
    blocks = -(-n // align)
    cuts = np.linspace(0, blocks, min(shards, blocks) + 1).round().astype(int) * align
    return [(int(a), int(min(b, n))) for a, b in zip(cuts[:-1], cuts[1:], strict=True) if a < n]
