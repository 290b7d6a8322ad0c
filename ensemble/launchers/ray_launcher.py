"""``--launcher ray``: each cell is a Ray task, on an existing cluster (``--launcher.address``) or on a local
Ray instance started for the run and stopped after it.

- **Resources.** A task asks for ``num_cpus`` = the cell's threads and ``num_gpus`` = ``gpus_per_cell`` (default:
  the cell config's ``trainer.devices`` when it trains on a GPU, else 0); Ray sets the task's
  ``CUDA_VISIBLE_DEVICES``.
- **Faults.** A task whose worker or node dies is retried by Ray (``max_retries`` = ``launcher.retries``); a fit
  process that dies inside a live task is retried by ``run_one`` itself. Either way the cell resumes from its
  last checkpoint, which is why the run folders must be on a filesystem every node shares.
- **Output.** Workers' output stays in each cell's ``cell.log`` (``log_to_driver=False``).
- **Address.** ``--launcher.address`` is checked before ``ray.init`` with one gRPC call and a short deadline
  (``ray.init`` itself retries an unreachable GCS for a minute, logging each try): the GCS's ``GetClusterId``
  for ``host:port`` (``auto``: the cluster ``ray start`` recorded), the client server's ``ClusterInfo`` for
  ``ray://``. Anything but an answer from Ray is one line.
- **Stopping.** SIGTERM or Ctrl-C cancels the tasks: a running one's ``run_cell`` stops its fit process
  (which checkpoints), and the run ends in one line naming the cells that had not finished.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from ensemble.errors import ConfigError
from ensemble.launchers.base import (
    STOPPING,
    CellResult,
    CellSpec,
    CellStopped,
    Launcher,
    RunOne,
    Slot,
    stopped_run,
    visible_gpus,
)
from ensemble.launchers.progress import Progress
from ensemble.training.threads import usable_cores

PROBE_TIMEOUT_S = 3.0  # an address that does not answer within this is reported, not waited on


def _call(run_one: RunOne, spec: CellSpec, slot: Slot) -> CellResult:
    """The body of a cell's Ray task (module level, so Ray pickles it by reference)."""
    return run_one(spec, slot)


def probe(address: str) -> None:
    """Check that a Ray cluster answers at ``address`` (``auto``, ``host:6379``, ``ray://host:10001``) within
    ``PROBE_TIMEOUT_S`` seconds: one gRPC call with that deadline, the GCS's ``GetClusterId`` (an empty request
    is a valid one) or, for ``ray://``, the Ray client server's ``ClusterInfo`` PING. A port that accepts connections
    but is not Ray (a proxy, another server) answers UNIMPLEMENTED or the like, and is refused too.

    Raises:
        ConfigError: no Ray cluster answers, naming the address and the cause.
    """
    import grpc

    hint = "start one with 'ray start --head', or leave the address out for a local Ray instance"
    hostport = address
    if address == "auto":  # the cluster the last `ray start` on this machine recorded, or RAY_ADDRESS
        from ray._private.services import canonicalize_bootstrap_address

        try:
            hostport = canonicalize_bootstrap_address("auto") or ""
        except ConnectionError:
            raise ConfigError(f"launcher.address 'auto': no Ray cluster was started on this machine; {hint}") from None
    client = hostport.startswith("ray://")
    host, _, port = hostport.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"launcher.address '{address}' is not auto, host:port or ray://host:port")
    method, request = "/ray.rpc.NodeInfoGcsService/GetClusterId", b""
    if client:  # the PING the Ray client itself sends first, which the client server answers before anything else
        from ray.core.generated import ray_client_pb2

        method = "/ray.rpc.RayletDriver/ClusterInfo"
        request = ray_client_pb2.ClusterInfoRequest(type=ray_client_pb2.ClusterInfoType.PING).SerializeToString()
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        try:
            channel.unary_unary(method)(request, timeout=PROBE_TIMEOUT_S)
            return
        except grpc.RpcError as err:
            code = err.code()
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        why = "refused or unreachable" if code == grpc.StatusCode.UNAVAILABLE else f"no answer in {PROBE_TIMEOUT_S:g} s"
        raise ConfigError(f"launcher.address '{address}': no Ray cluster answers there ({why}); {hint}")
    if code in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNKNOWN):
        raise ConfigError(f"launcher.address '{address}': something answers there, but not a Ray "
                          f"{'client server' if client else 'head node (GCS)'} ({code.name}); {hint}")  # fmt: skip


def _signal_handlers(restore: dict[int, Any] | None = None) -> dict[int, Any]:
    """This process's SIGTERM and SIGINT handlers; with ``restore``, put those back first. ``ray.init`` sets its
    own SIGTERM handler (``sys.exit``), which would end the run without stopping its cells: the launcher saves
    ``stopping_cells``' handlers before it and restores them after. Main thread only (elsewhere: nothing)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    for sig, handler in (restore or {}).items():
        signal.signal(sig, handler)
    return {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}


def gpus_for(config: dict[str, Any], gpus_per_cell: float | None) -> float:
    """GPUs a cell's task asks for: ``gpus_per_cell``, else ``trainer.devices`` (a count; 1 for a list or
    ``auto``) when ``trainer.accelerator`` is gpu or cuda, else 0."""
    if gpus_per_cell is not None:
        return gpus_per_cell
    trainer = config.get("trainer") or {}
    if str(trainer.get("accelerator", "cpu")) not in ("gpu", "cuda"):
        return 0
    devices = trainer.get("devices", 1)
    return float(devices) if isinstance(devices, int) and devices > 0 else 1.0


class RayLauncher(Launcher):
    """Submit every cell at once; Ray runs as many as the cluster's resources allow."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.settings.address is not None:  # before any cell is planned: an unreachable cluster is one line, now
            probe(self.settings.address)

    def run(self, specs: Sequence[CellSpec], run_one: RunOne, progress: Progress) -> list[CellResult]:
        import ray

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report leaves the machine
        handlers = _signal_handlers()
        ours = self.connect(ray)
        _signal_handlers(handlers)
        try:
            cpus = self.threads or self._cpus_per_cell(ray, ours and self.settings.address is None)
            task = ray.remote(_call)
            pending: dict[Any, CellSpec] = {}
            submitted = time.perf_counter()
            for spec in specs:
                options = {"num_cpus": cpus, "num_gpus": gpus_for(spec.config, self.settings.gpus_per_cell),
                           "max_retries": self.settings.retries}  # fmt: skip
                pending[task.options(**options).remote(run_one, spec, Slot(cpus))] = spec
                progress.start(spec)
            results: dict[str, CellResult] = {}
            try:
                while pending and not STOPPING:
                    done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)  # wakes to see a stop
                    if done:
                        spec = pending.pop(done[0])
                        results[spec.key] = self._result(ray, done[0], spec, submitted)
                        progress.done(spec, results[spec.key])
                if STOPPING:  # each running task's run_cell stops its fit (it checkpoints), then the task ends
                    for ref in pending:
                        ray.cancel(ref)
                    ray.wait(list(pending), num_returns=len(pending), timeout=60)
                    raise stopped_run([CellStopped(s.key, True, STOPPING[0]) for s in pending.values()])
            finally:  # force only the tasks still running: force-cancelling one that has just finished trips
                # a Ray check (task_manager.cc, "it != submissible_tasks_.end()") that kills this driver
                if pending:
                    _, running = ray.wait(list(pending), num_returns=len(pending), timeout=0)
                    for ref in running:
                        ray.cancel(ref, force=True)
            return [results[spec.key] for spec in specs]
        finally:
            if ours:
                ray.shutdown()

    def connect(self, ray: Any) -> bool:
        """Join ``settings.address``, or start a local instance; True when this call did either (the run then
        ends with ``ray.shutdown()``: it stops a local instance and only disconnects from a cluster).

        Raises:
            ConfigError: the address cannot be reached, in one line and within seconds.
        """
        address = self.settings.address
        quiet = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if ray.is_initialized():
            return False
        try:
            if address is None:
                workers = self.settings.workers
                cpus = workers * self.threads if workers and self.threads else usable_cores()
                ray.init(num_cpus=cpus, num_gpus=len(visible_gpus()), **quiet)
                return True
            ray.init(address=address, **quiet)  # probed when the launcher was made
            return True
        except ConnectionError as err:
            raise ConfigError(f"launcher.address '{address}': {str(err).splitlines()[0]}") from None

    def _cpus_per_cell(self, ray: Any, ours: bool) -> int:
        """Each cell's CPUs: on our own instance its share among ``workers`` (default: as many workers as
        CPUs, one each), on a cluster 1 unless ``--threads`` says otherwise."""
        if not ours:
            return 1
        total = int(ray.cluster_resources().get("CPU", 1))
        return max(1, total // self.settings.workers) if self.settings.workers else 1

    @staticmethod
    def _result(ray: Any, ref: Any, spec: CellSpec, submitted: float) -> CellResult:
        """The task's result; a task Ray gave up on (its retries spent) is a failed cell, not a crash."""
        try:
            return ray.get(ref)
        except (ray.exceptions.RayTaskError, ray.exceptions.WorkerCrashedError,
                ray.exceptions.NodeDiedError, ray.exceptions.TaskCancelledError) as err:  # fmt: skip
            return CellResult(spec.key, 1, f"Ray task failed: {str(err).strip().splitlines()[-1]}",
                              time.perf_counter() - submitted)  # fmt: skip
