"""Before a Ray study's first trial: can every node load Fashion-MNIST?

A trial reads the data on the node it lands on. A node without it would fail each trial sent
there (and each retry) with an error buried in Ray's trial logs, so the study asks every alive
node first, with one small task pinned to each, and stops with one line naming the node."""

from __future__ import annotations

from pathlib import Path

from fashionlab.errors import ConfigError, FashionlabError, one_line
from fashionlab.studies.cluster import connect_timeout

# A node's first task starts a Python worker that imports torch: seconds, not milliseconds.
PROBE_STARTUP_S = 120.0


def _load_here(data_dir: str | None) -> tuple[bool, str]:
    """On a node: (True, the source it loaded and verified) or (False, why not)."""
    from fashionlab.data import load_fashion_mnist

    try:
        dataset = load_fashion_mnist(data_dir)
    except FashionlabError as exc:
        return False, one_line(exc, 240)
    return True, dataset.source


def check_nodes_have_data(ray, data_dir: Path | None) -> dict[str, str]:
    """{node address: the data source it verified}, for every alive node with CPUs; raises
    ConfigError naming the first node that cannot load the data or does not answer."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0, max_retries=0)(_load_here)
    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0)]
    pending = {
        probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        ).remote(None if data_dir is None else str(data_dir)): node["NodeManagerAddress"]
        for node in nodes
    }
    timeout = PROBE_STARTUP_S + connect_timeout()
    done, late = ray.wait(list(pending), num_returns=len(pending), timeout=timeout)
    if late:
        raise ConfigError(
            f"Ray node {pending[late[0]]} did not say within {timeout:g} s whether it has the "
            "data; check that node (ray status) or raise FASHIONLAB_RAY_TIMEOUT"
        )
    sources = {}
    for ref in done:
        node = pending[ref]
        try:
            ok, detail = ray.get(ref)
        except Exception as exc:  # the node died or its worker could not start
            raise ConfigError(
                f"Ray node {node} could not check its data: {one_line(exc, 200)}"
            ) from None
        if not ok:
            raise ConfigError(
                f"Ray node {node} cannot load Fashion-MNIST: {detail}. Every node needs the "
                "data: install the Debian package dataset-fashion-mnist there, or give "
                "--data-dir a folder every node sees"
            )
        sources[node] = detail
    return dict(sorted(sources.items()))
