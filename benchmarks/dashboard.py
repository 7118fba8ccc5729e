"""The dashboard's three numbers: ``python benchmarks/dashboard.py [--only list,preview,live]``.

* **list**: ``GET /`` of the real ``appliance dashboard`` (over HTTP, logged in) with 10,000 jobs in
  the store, each with a payload folder holding one instance (target: under 300 ms), cold (first
  request) and warm (median of 20); filtered by state and by search text; ``/metrics``. Next to
  it, the peer an operator had before: ``appliance jobs list --json`` over the same store.
* **preview**: reading a finished 512x512x300 study's CT and SEG and rendering the four PNG
  previews (target: under 2 s), split into its steps. The SEG comes from the real writer stage.
* **live**: a study pushed with storescu into a live stack (CPU Triton, adapter, worker, exporter,
  dashboard); in Chromium a MutationObserver stamps the moment the job's row turns ``done``; the
  number is that moment minus the job's ``finished_at`` in the store (target: under 2 s), 3 studies.

Numbers, not a test: they depend on the machine and what else runs (the load average is printed).
The 10,000 jobs are written straight into a job store in bulk (SQLite, the store's own schema):
through the services' API each would cost a dozen synchronous transactions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "dashboard")]
from dashkit import USERS, add_result, dashboard_config, make_job  # noqa: E402

from appliance.jobs import JobState, JobStore  # noqa: E402
from appliance.phantom import PhantomSpec, write_phantom  # noqa: E402
from appliance.storage import PayloadLayout  # noqa: E402

APPLIANCE = Path(sys.executable).with_name("appliance")


def _load() -> str:
    return "load average " + " ".join(f"{v:.1f}" for v in os.getloadavg())


def _fill_store(root: Path, jobs: int, instance: Path) -> None:
    """``jobs`` jobs in mixed states, each with stage and export rows and one instance on disk."""
    with JobStore(root / "jobs.sqlite3"):
        pass  # the schema
    db = sqlite3.connect(str(root / "jobs.sqlite3"))
    states = [JobState.DONE] * 8 + [JobState.FAILED, JobState.RUNNING]
    now = time.time()
    job_rows, stage_rows, export_rows = [], [], []
    for n in range(jobs):
        job_id = f"OrganSeg-20261201T{n // 3600 % 24:02d}{n // 60 % 60:02d}{n % 60:02d}-{n:08x}"
        state = states[n % len(states)]
        created = now - (jobs - n) * 30
        job_rows.append((job_id, state.value, "OrganSeg" if n % 3 else "LiverSeg", "MODALITY", f"1.2.3.{n}",
                         "OrganSeg", '["PACS"]', 1, 200, created, created + 20, created + 5, created + 10,
                         created + 20 if state is not JobState.RUNNING else None, 1,
                         "export failed to PACS" if state is JobState.FAILED else None,
                         "export" if state is JobState.FAILED else None, 0, f"10.0.{n // 256 % 256}.{n % 256}"))
        for i, stage in enumerate(("reader", "inference", "writer", "export")):
            stage_rows.append((job_id, stage, "succeeded", "", created + 10 + i, created + 10 + i, created + 11 + i,
                               0.5 + i, 1))
        export_rows.append((job_id, "PACS", 1, "failed" if state is JobState.FAILED else "sent", 1, 0, "",
                            created + 20))
        folder = root / job_id / "input"
        folder.mkdir(parents=True)
        os.link(instance, folder / "1.dcm")
    db.executemany("INSERT INTO jobs (id, state, called_ae, calling_ae, study_uid, workflow, destinations, version, "
                   "instance_count, created_at, updated_at, last_instance_at, ready_at, finished_at, attempt, error, "
                   "failed_phase, resumes, calling_address) VALUES (" + ",".join("?" * 19) + ")", job_rows)
    db.executemany("INSERT INTO stages (job_id, stage, status, detail, at, started_at, ended_at, duration_s, attempt) "
                   "VALUES (?,?,?,?,?,?,?,?,?)", stage_rows)
    db.executemany("INSERT INTO exports VALUES (?,?,?,?,?,?,?,?)", export_rows)
    db.commit()
    db.close()


def _dashboard(folder: Path, config: dict[str, Any]) -> tuple[subprocess.Popen[bytes], str]:
    path = folder / "dashboard.yaml"
    path.write_text(yaml.safe_dump(config))
    log = (folder / "dashboard.log").open("ab")
    proc = subprocess.Popen([str(APPLIANCE), "dashboard", "--config", str(path)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{config['dashboard']['port']}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"the dashboard did not start: {(folder / 'dashboard.log').read_text()[-2000:]}")


def _logged_in(url: str, user: str = "vic") -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=60)
    page = client.get("/login").text
    token = page.split('name="login_token" value="', 1)[1].split('"', 1)[0]
    done = client.post("/login", data={"user": user, "password": USERS[user][0], "login_token": token, "next": "/"},
                       headers={"Origin": url})
    assert done.status_code in (200, 303), done.status_code
    return client


def _timed(client: httpx.Client, path: str, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        r = client.get(path)
        times.append(time.perf_counter() - t0)
        assert r.status_code == 200, (path, r.status_code)
    return times


def bench_list(tmp: Path, jobs: int) -> dict[str, Any]:
    from appliance.dashboard.app import create_app  # noqa: F401 - fail early if the package is broken

    root = tmp / "list"
    phantom = write_phantom(tmp / "tiny", PhantomSpec(size=32, slices=4))
    t0 = time.perf_counter()
    _fill_store(root, jobs, phantom.files[0])
    fill_s = time.perf_counter() - t0
    config = dashboard_config(root, port=_free_port())
    proc, url = _dashboard(tmp, config)
    try:
        client = _logged_in(url)
        cold = _timed(client, "/", 1)[0]
        time.sleep(0.5)
        # The feed's thread reads every job's details once, for searching; wait until it is done.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "PHANTOM" not in client.get("/?q=phantom&limit=1").text.upper():
            time.sleep(0.5)
        warm = _timed(client, "/", 20)
        failed = _timed(client, "/?state=failed", 10)
        search = _timed(client, "/?q=10.0.3.", 10)
        metrics = _timed(client, "/metrics", 5)
        rows = client.get("/").text.count('<tr id="job-')
    finally:
        proc.terminate()
        proc.wait(10)
    cli = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([str(APPLIANCE), "jobs", "--config", str(tmp / "dashboard.yaml"), "list", "--json"],
                       capture_output=True, check=True)
        cli.append(time.perf_counter() - t0)
    return {
        "jobs in the store": jobs, "rows on the page": rows, "bulk fill (s)": round(fill_s, 1),
        "GET / first request (ms)": round(cold * 1000),
        "GET / warm, median of 20 (ms)": round(statistics.median(warm) * 1000),
        "GET / warm, max (ms)": round(max(warm) * 1000),
        "GET /?state=failed, median (ms)": round(statistics.median(failed) * 1000),
        "GET /?q=<IP prefix>, median (ms)": round(statistics.median(search) * 1000),
        "GET /metrics, median (ms)": round(statistics.median(metrics) * 1000),
        "peer: appliance jobs list --json, median of 3 (ms)": round(statistics.median(cli) * 1000),
        "target GET / (ms)": 300,
    }


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_preview(tmp: Path, size: int, slices: int) -> dict[str, Any]:
    from appliance.dashboard import previews, viewer
    from appliance.dashboard.results import ResultFiles, load

    t0 = time.perf_counter()
    phantom = write_phantom(tmp / "big", PhantomSpec(size=size, slices=slices, length_mm=slices * 1.0))
    root = tmp / "preview"
    layout = PayloadLayout(root)
    with JobStore(root / "jobs.sqlite3") as store:
        make_job(store, "OrganSeg-1", state=JobState.DONE)
    add_result(layout, "OrganSeg-1", phantom)
    made_s = time.perf_counter() - t0
    files = ResultFiles.find(layout, "OrganSeg-1")
    rounds = []
    for _ in range(3):
        t0 = time.perf_counter()
        result = load(files)
        t1 = time.perf_counter()
        pngs = previews.build(result)
        t2 = time.perf_counter()
        rounds.append((t1 - t0, t2 - t1))
    best = min(rounds, key=sum)
    t0 = time.perf_counter()
    viewer.prepare(result, files, tmp / "viewer")
    viewer_s = time.perf_counter() - t0
    return {
        "study": f"{size}x{size}x{slices}, segments {', '.join(s.label for s in result.segments)}",
        "making the study (phantom, reader, writer) (s)": round(made_s, 1),
        "load CT + SEG -> labels, best of 3 (s)": round(best[0], 2),
        "render 4 PNGs, best of 3 (s)": round(best[1], 2),
        "preview total, best of 3 (s)": round(sum(best), 2),
        "preview total, worst of 3 (s)": round(max(sum(r) for r in rounds), 2),
        "PNG sizes (kB)": {k: len(v) // 1024 for k, v in pngs.items()},
        "viewer volumes, first conversion (s)": round(viewer_s, 2),
        "target preview (s)": 2,
    }


def bench_live(tmp: Path, studies: int) -> dict[str, Any]:
    from livestack import CHROMIUM, CHROMIUM_ARGS, LiveStack, log_in
    from playwright.sync_api import sync_playwright

    live = LiveStack(tmp / "live").start()
    delays = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page()
            log_in(page, live.url, "vic", USERS["vic"][0])
            page.wait_for_selector("#live:text('live')")
            # Stamp (wall clock) each row the moment it shows 'done'.
            page.evaluate("""() => { window.doneAt = {}; new MutationObserver(() => {
                for (const row of document.querySelectorAll('#jobs tr[data-state=done]')) {
                    if (!(row.id in window.doneAt)) window.doneAt[row.id] = Date.now() / 1000; } })
                .observe(document.getElementById('jobs'), {subtree: true, childList: true}); }""")
            for seed in range(studies):
                phantom = write_phantom(tmp / f"p{seed}", PhantomSpec(seed=100 + seed))
                live.push(phantom.files)
                job = live.job_of(phantom.study_uid)
                page.wait_for_selector(f"#job-{job.id}[data-state=done]", timeout=180_000)
                finished = live.stack.job(job.id).finished_at
                shown = page.evaluate(f"() => window.doneAt['job-{job.id}']")
                assert finished is not None and shown is not None
                delays.append(shown - finished)
            browser.close()
    finally:
        live.stop()
    return {
        "studies": studies,
        "job done -> row done in the browser, each (s)": [round(d, 2) for d in delays],
        "median (s)": round(statistics.median(delays), 2),
        "max (s)": round(max(delays), 2),
        "target (s)": 2,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="list,preview,live", help="comma-separated: list, preview, live")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--studies", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="also print everything as one JSON object")
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    results: dict[str, Any] = {"machine": f"{os.cpu_count()} cores, {_load()} at start"}
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as name:
        tmp = Path(name)
        if "list" in wanted:
            results["list"] = bench_list(tmp, args.jobs)
        if "preview" in wanted:
            results["preview"] = bench_preview(tmp, args.size, args.slices)
        if "live" in wanted:
            results["live"] = bench_live(tmp, args.studies)
        shutil.rmtree(tmp, ignore_errors=True)
    results["load at end"] = _load()
    for section, numbers in results.items():
        if isinstance(numbers, dict):
            print(f"\n{section}")
            for key, value in numbers.items():
                print(f"  {key:<55} {value}")
        else:
            print(f"{section}: {numbers}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
