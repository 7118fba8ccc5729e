"""Throughput of the worker fleet: ``python benchmarks/fleet.py [--studies 8 --slices 64]``.

Studies per minute for 1, 2 and 4 ``appliance worker`` processes on one PostgreSQL job store, and for
the single worker on SQLite, on this machine and in this run: the same demo model (OrganSeg on a
real tritonserver from nvidia-pytriton, on CPU), the same phantom CT studies (128 x 128 x 64 by
default), results sent to a dcmtk ``storescp``. For each configuration the studies are received
first, the workers started, and only then are the studies marked complete (``jobs complete``), so
every job becomes ready at once; the rate is measured from the first stage started to the last
job done: the workers' and the exporter's, not the sender's, and no worker's start-up.

Also printed, per configuration: the mean time per stage, the CPU seconds the workers and Triton
used in that window and the cores they kept busy, so it shows when the machine's CPUs, not the job
store, bound the rate (scaling efficiency = rate(N) / (N x rate(1))). Numbers, not a test.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from e2e.e2ekit import Adapter, Exporter, Worker, free_port, stack_config, system_tool  # noqa: E402

from appliance.jobs import Job, JobState, JobStore  # noqa: E402
from appliance.phantom import PhantomFiles, PhantomSpec, write_phantom  # noqa: E402
from appliance.triton_local import LocalTriton  # noqa: E402
from harness.peers import nodelay_env  # noqa: E402
from harness.postgres import PostgresServer  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its waited-for children so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICK


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and every process below it (Triton's Python-backend stubs run the models)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += cpu_seconds(current)
        todo.extend(children.get(current, []))
    return total


def run(label: str, folder: Path, store: str | Path, workers: int, studies: list[PhantomFiles], triton: LocalTriton,
        pacs_port: int) -> dict[str, Any]:
    assert triton.ports is not None
    config = stack_config(folder, free_port(), pacs_port, triton.ports, {"OrganSeg": "OrganSeg"})
    config["dicom"]["scu"]["destinations"][0]["ae-title"] = "PACS"
    config["completion"]["quiet-seconds"] = 3600  # studies are completed by request, all at once
    config["worker"].update({"workers": 1, "max-concurrent-inference": 1, "poll-seconds": 0.05})
    if isinstance(store, str):
        config["storage"]["database-url"] = store
    kinds = [(Adapter, "adapter"), (Exporter, "exporter"), *[(Worker, f"worker{n}") for n in range(workers)]]
    processes: list[Adapter] = []
    for kind, name in kinds:
        (folder / name).mkdir(parents=True)
        processes.append(kind(folder / name, config))
    target = store if isinstance(store, str) else folder / "payloads" / "jobs.sqlite3"
    try:
        processes[0].start()
        processes[1].start()
        for study in studies:
            done = subprocess.run([str(system_tool("storescu")), "-aet", "BENCH", "-aec", "OrganSeg", "127.0.0.1",
                                   str(processes[0].port), *map(str, study.files)], capture_output=True,
                                  env=nodelay_env(), timeout=300)
            if done.returncode != 0:
                raise SystemExit(f"storescu failed: {done.stderr.decode()}")
        received = len(studies[0].files)
        _wait(target, lambda jobs: len(jobs) == len(studies) and all(j.instance_count == received for j in jobs), 120)
        for p in processes[2:]:
            p.start()
        cpu_before = {p: cpu_seconds(p.proc.pid) for p in processes[2:] if p.proc}
        triton_pid = triton.process.pid if triton.process else 0
        triton_before = tree_cpu_seconds(triton_pid)
        with JobStore(target) as opened:
            for study in studies:
                opened.request_completion(study.study_uid)
        jobs = _wait(target, lambda jobs: all(j.state in (JobState.DONE, JobState.FAILED) for j in jobs), 900)
        worker_cpu = sum(cpu_seconds(p.proc.pid) - cpu_before[p] for p in processes[2:] if p.proc)
        triton_cpu = tree_cpu_seconds(triton_pid) - triton_before
        with JobStore(target) as opened:
            stages = {j.id: opened.stages(j.id) for j in jobs}
    finally:
        for p in processes:
            p.kill()
    failed = [j for j in jobs if j.state is not JobState.DONE]
    if failed:
        raise SystemExit(f"{label}: {len(failed)} job(s) failed: {failed[0].error}")
    start = min(s.started_at or 0 for records in stages.values() for s in records)
    end = max(j.finished_at or 0 for j in jobs)
    wall = end - start
    per_stage: dict[str, float] = {}
    for records in stages.values():
        for s in records:
            per_stage[s.stage] = per_stage.get(s.stage, 0.0) + (s.duration_s or 0) / len(jobs)
    return {"label": label, "workers": workers, "studies": len(jobs), "wall_s": wall,
            "per_min": 60 * len(jobs) / wall, "stages": per_stage, "worker_cpu_s": worker_cpu,
            "triton_cpu_s": triton_cpu, "cores_busy": (worker_cpu + triton_cpu) / wall}


def _wait(target: str | Path, done: Any, timeout: float) -> list[Job]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with JobStore(target) as store:
            jobs = store.list_jobs()
        if jobs and done(jobs):
            return jobs
        time.sleep(0.1)
    raise SystemExit(f"timed out after {timeout} s: {[(j.id, j.state.value) for j in jobs]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=8, help="studies per configuration (default 8)")
    parser.add_argument("--size", type=int, default=128, help="rows/columns (default 128)")
    parser.add_argument("--slices", type=int, default=64, help="slices per study (default 64)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="PostgreSQL worker counts")
    args = parser.parse_args()
    if system_tool("storescp") is None:
        raise SystemExit("dcmtk is needed (apt-get install dcmtk)")
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as name, PostgresServer() as postgres:
        tmp = Path(name)
        studies = [write_phantom(tmp / f"study{n}", PhantomSpec(size=args.size, slices=args.slices, seed=200 + n))
                   for n in range(args.studies)]
        pacs_port = free_port()
        (tmp / "pacs").mkdir()
        pacs = subprocess.Popen([str(system_tool("storescp")), "-aet", "PACS", "-od", str(tmp / "pacs"), "-uf",
                                 str(pacs_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=nodelay_env())
        triton = LocalTriton(workdir=tmp / "triton").start()
        results = []
        try:
            # Triton's first requests load and warm the model: not part of any configuration's rate.
            run("warm-up", tmp / "warm-up", postgres.create_database(), 1, studies[:2], triton, pacs_port)
            results.append(run("SQLite, 1 worker", tmp / "sqlite", tmp / "sqlite", 1, studies, triton, pacs_port))
            for n in args.workers:
                results.append(run(f"PostgreSQL, {n} worker(s)", tmp / f"pg{n}", postgres.create_database(), n,
                                   studies, triton, pacs_port))
        finally:
            triton.stop()
            pacs.kill()
    base = next((r["per_min"] for r in results if r["label"].startswith("PostgreSQL") and r["workers"] == 1), None)
    cores = os.cpu_count() or 1
    print(f"{args.studies} studies of {args.size}x{args.size}x{args.slices}, OrganSeg on CPU Triton, {cores} cores, "
          f"load average (1 min) at the start {load_start:.1f}, at the end {os.getloadavg()[0]:.1f}")
    stage_names = sorted({s for r in results for s in r["stages"]}, key=["reader", "inference", "writer",
                                                                         "export"].index)
    header = (f"{'configuration':<26} {'studies/min':>11} {'efficiency':>10} {'wall s':>7} "
              + " ".join(f"{s + ' s':>11}" for s in stage_names)
              + f" {'CPU s (workers+triton)':>23} {'cores busy':>10}")
    print(header)
    for r in results:
        eff = r["per_min"] / (r["workers"] * base) if base and r["label"].startswith("PostgreSQL") else None
        print(f"{r['label']:<26} {r['per_min']:>11.1f} {(f'{eff:.2f}' if eff else '-'):>10} {r['wall_s']:>7.1f} "
              + " ".join(f"{r['stages'].get(s, 0):>11.2f}" for s in stage_names)
              + f" {r['worker_cpu_s']:>11.1f}+{r['triton_cpu_s']:<11.1f} {r['cores_busy']:>10.2f}")
    print(f"stage columns: mean seconds per study; 'cores busy' = CPU seconds / wall seconds (at most {cores}).")
    print("When 'cores busy' is near the cores this run could get (fewer while other processes run: see the load),")
    print("CPU bounds the rate: more workers only share it, and each stage takes longer.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
