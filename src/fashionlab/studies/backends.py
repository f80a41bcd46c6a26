"""Where a study's runs execute: one after another, in a local process pool, or on Ray.

Every backend calls the same `execute.execute_run` for each planned run, so the run folders (and
therefore the aggregate and the report) are the same whichever one ran them, and an
interrupted study resumes under any backend.

Runs are independent except S1-FEAT-style runs (`features_from`), which read a CNN run's
weights; they go in a second wave, after every run of the first wave has finished.

Threads: a pool of W workers on C cores gives each worker max(1, C // W) torch threads, so the
total matches the cores (more threads than cores makes every worker wait on the others).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path

from fashionlab.errors import ConfigError, RunError, one_line
from fashionlab.runs import load_metrics
from fashionlab.studies.cluster import check_reachable
from fashionlab.studies.execute import execute_run, resolve_features_source
from fashionlab.studies.node_data import check_nodes_have_data
from fashionlab.studies.spec import PlannedRun
from fashionlab.tracking import TrackingSettings

BACKENDS = ("local", "ray")
TRIAL_RETRIES = 2  # how often Ray Tune restarts a trial whose worker or node died
RAY_INSTALL_HINT = "pip install 'fashionlab[ray]' (or: pip install 'ray[tune]')"


def check_backend(backend: str, workers: int, address: str | None) -> None:
    """One-line errors for a bad choice, before anything runs."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if address and backend != "ray":
        raise ConfigError("--address is for --backend ray")
    if backend == "ray":
        import_ray()
        if address:
            check_reachable(address)


def import_ray():
    """The `ray` module, or a ConfigError that says how to install it."""
    try:
        import ray
        import ray.tune  # noqa: F401  (the extra installs both)
    except ImportError:
        raise ConfigError(f"--backend ray needs Ray: {RAY_INSTALL_HINT}") from None
    return ray


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    return max(1, (cores or os.cpu_count() or 1) // workers)


def waves(planned: Sequence[PlannedRun]) -> list[list[PlannedRun]]:
    """Runs that depend on no other run first, then the feature runs that read them; twins
    (`PlannedRun.same_as`) are not run: their original's folder is theirs."""
    first = [r for r in planned if not r.features_from and r.same_as is None]
    second = [r for r in planned if r.features_from and r.same_as is None]
    return [w for w in (first, second) if w]


def run_planned(
    planned: list[PlannedRun],
    backend: str,
    workers: int,
    address: str | None,
    quiet: bool,
    data_dir: str | Path | None,
    tracking: TrackingSettings | None = None,
) -> dict[str, dict[str, str]]:
    """Execute every planned run that is not complete, with the chosen backend; every
    backend's runs log to the same `tracking` settings. Returns, for Ray, which node trained
    each run ("nodes": folder name -> node address) and the data source each node verified
    ("data": node address -> source); empty for the local backends."""
    for run in planned:
        # Absolute: pool and Ray workers may run in another working directory.
        run.run_dir = run.run_dir.resolve()
    data_dir = Path(data_dir).resolve() if data_dir else None
    if backend == "local" and workers == 1:
        _run_sequential(planned, quiet, data_dir, tracking)
        return {}
    details: dict[str, dict[str, str]] = {}
    for wave in waves(planned):
        for run in wave:
            resolve_features_source(run, planned)
        if backend == "ray":
            found = _run_ray(wave, planned, workers, address, quiet, data_dir, tracking)
            for key, values in found.items():
                details.setdefault(key, {}).update(values)
        else:
            _run_pool(wave, planned, workers, quiet, data_dir, tracking)
    return details


def _run_sequential(
    planned: list[PlannedRun],
    quiet: bool,
    data_dir: Path | None,
    tracking: TrackingSettings | None,
) -> None:
    for k, run in enumerate(planned, 1):
        if not quiet:
            print(f"[{k}/{len(planned)}] {run.label} seed {run.seed}", file=sys.stderr, flush=True)
        if run.same_as is not None:
            if not quiet:
                print(f"  the same network and recipe as {run.same_as}: trained once, "
                      f"reported under both names", file=sys.stderr)  # fmt: skip
            continue
        status = execute_run(run, planned, quiet, data_dir, tracking)
        if not quiet and status == "done":
            print("  already complete", file=sys.stderr)


# ---------------------------------------------------------------- local process pool


PARENT_CHECK_SECONDS = 2.0


def watch_parent(parent_pid: int, interval: float = PARENT_CHECK_SECONDS) -> None:
    """End this process once `parent_pid` is no longer its parent. A study stopped by a signal
    (kill, a scheduler's time limit) cannot shut its pool down; orphaned workers would go on
    writing run folders that the next invocation, which claims the study folder afresh, trains
    too. A run cut off this way is resumed by the next invocation."""

    def check() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=check, name="watch-parent", daemon=True).start()


def _init_worker(threads: int, parent_pid: int) -> None:
    import torch

    watch_parent(parent_pid)
    torch.set_num_threads(threads)


def _pool_task(
    index: int,
    planned: list[PlannedRun],
    data_dir: Path | None,
    tracking: TrackingSettings | None,
) -> str:
    return execute_run(planned[index], planned, True, data_dir, tracking)


def _run_pool(
    wave: list[PlannedRun],
    planned: list[PlannedRun],
    workers: int,
    quiet: bool,
    data_dir: Path | None,
    tracking: TrackingSettings | None,
) -> None:
    workers = min(workers, len(wave))
    threads = threads_per_worker(workers)
    index = {id(run): i for i, run in enumerate(planned)}
    # spawn, not fork: a forked child inherits torch's OpenMP thread pool in a broken state.
    with ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=_init_worker,
        initargs=(threads, os.getpid()),
    ) as pool:
        futures = {
            pool.submit(_pool_task, index[id(run)], planned, data_dir, tracking): run
            for run in wave
        }
        for future in as_completed(futures):
            run = futures[future]
            status = future.result()  # a user error in a worker is re-raised here
            if not quiet:
                print(f"{run.label} seed {run.seed}: {status}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- Ray Tune


def _ray_trial(
    trial_config: dict,
    planned: list[PlannedRun],
    data_dir: Path | None,
    tracking: TrackingSettings | None,
) -> None:
    import ray
    import torch
    from ray import tune

    torch.set_num_threads(trial_config["threads"])
    run = planned[trial_config["index"]]
    status = execute_run(run, planned, True, data_dir, tracking)
    metrics = load_metrics(run.run_dir)
    tune.report(
        {
            "node": ray.util.get_node_ip_address(),  # which machine trained it
            "status": status,
            "test_accuracy": metrics["test_accuracy"],
            "run_dir": str(run.run_dir),
        }
    )


def _run_ray(
    wave: list[PlannedRun],
    planned: list[PlannedRun],
    workers: int,
    address: str | None,
    quiet: bool,
    data_dir: Path | None,
    tracking: TrackingSettings | None,
) -> dict[str, dict[str, str]]:
    from ray import tune

    with ray_session(address, quiet) as ray:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        require_free_cpu(ray, address)
        data_sources = check_nodes_have_data(ray, data_dir)
        threads = threads_per_worker(min(workers, len(wave)), cpus)
        index = {id(run): i for i, run in enumerate(planned)}
        trainable = tune.with_resources(
            tune.with_parameters(_ray_trial, planned=planned, data_dir=data_dir, tracking=tracking),
            {"cpu": threads},
        )
        storage = planned[0].run_dir.parent / "ray"
        tuner = tune.Tuner(
            trainable,
            param_space={
                "index": tune.grid_search([index[id(run)] for run in wave]),
                "threads": threads,
            },
            tune_config=tune.TuneConfig(max_concurrent_trials=workers),
            run_config=tune.RunConfig(
                storage_path=str(storage),
                name="study",
                verbose=0,
                # A trial whose node dies is started again elsewhere; it resumes its run
                # folder from the last checkpointed epoch (execute_run), or trains it afresh.
                failure_config=tune.FailureConfig(max_failures=TRIAL_RETRIES),
            ),
        )
        results = tuner.fit()
        if not quiet:
            for result in results:
                if result.error is None:
                    print(
                        f"{result.metrics['run_dir']}: {result.metrics['status']}, test accuracy "
                        f"{result.metrics['test_accuracy']:.4f}",
                        file=sys.stderr,
                    )
        if results.errors:
            first = str(results.errors[0]).strip().splitlines()
            raise RunError(
                f"{len(results.errors)} Ray trial(s) failed; first: {first[-1] if first else '?'}"
            )
        nodes = {
            Path(r.metrics["run_dir"]).name: r.metrics["node"] for r in results if r.error is None
        }
        return {"nodes": nodes, "data": data_sources}


def require_free_cpu(ray, address: str | None) -> None:
    """A one-line error instead of trials that wait forever for a CPU."""
    total = ray.cluster_resources().get("CPU", 0)
    free = ray.available_resources().get("CPU", 0)
    if free < 1:
        where = f"at {address}" if address else "here"
        raise RunError(
            f"the Ray cluster {where} has no free CPU ({total:g} in all, all in use); "
            "wait for its jobs to end or add a worker node"
        )


@contextmanager
def ray_session(address: str | None, quiet: bool) -> Iterator:
    """The `ray` module with a connection: the one already open (left open), else a new local
    instance with every core, or the cluster at `address` (closed on exit)."""
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        init_args: dict = {"include_dashboard": False, "log_to_driver": not quiet}
        if address:
            check_reachable(address)
            init_args["address"] = address
        else:
            init_args["num_cpus"] = os.cpu_count() or 1
        try:
            ray.init(**init_args)
        except (ConnectionError, RuntimeError) as exc:
            # Something answered at the address, but not a Ray cluster (or not one we may join).
            raise ConfigError(
                f"cannot join a Ray cluster at {address}: {one_line(exc, 160)}; check that a "
                "cluster runs there (ray start --head), the port, and RAY_AUTH_TOKEN"
            ) from None
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()
