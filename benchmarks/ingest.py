"""Ingest benchmark: one generated CT series sent by dcmtk ``storescu`` to each receiver in turn.

Receivers: dcmtk ``storescp``, Orthanc, a stock pynetdicom SCP (writes ``encoded_dataset()``,
no fsync, TCP_NODELAY on its accepted sockets), the appliance's adapter exactly as shipped
(default configuration; durable writes: fdatasync + rename + directory fsync before each
acknowledgement; there is no switch to turn them off), the same adapter with pynetdicom's public
chunked receive instead of its hand-written receiver (``benchmarks/chunked_receiver.py``, the
alternative of issue 18, same durability), and the shipped adapter **under attack**: while it
receives, 50 idle connections (from 50 source addresses, reopened when the adapter closes them)
and one slow-drip sender (an association sending one byte of a C-STORE per second) are open.
All peers run with ``TCP_NODELAY=1``. All run at once and are measured in ``--repeat``
interleaved rounds (one run of each per round, the page cache written out before each run, see
:func:`measure`), so a change in the machine's load touches every receiver alike; the median is
reported, in instances/s and MB/s (1 MB = 10^6 bytes of file data), with the ratios that decide
things: the hand-written receiver against the chunked one (kept only at 1.3x or more), the
adapter against dcmtk and Orthanc, and under attack against quiet.

    .venv/bin/python benchmarks/ingest.py --slices 200 --repeat 3              # 200 x 512x512
    .venv/bin/python benchmarks/ingest.py --slices 2000 --rows 64 --repeat 3   # 2,000 small instances
    .venv/bin/python benchmarks/ingest.py --load 2 ...                         # with 2 busy processes

Not a test: numbers depend on the disk and on what else runs; the 1-minute load average is
printed before and after, so a run on a busy host can be recognised as such. Needs dcmtk; skips
Orthanc if absent.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "adapter")]
import rawdicom  # noqa: E402
from ctseries import write_series  # noqa: E402

from harness.peers import nodelay_env, system_tool  # noqa: E402

ENV = nodelay_env()
# dcmtk's tools, not the same-named pynetdicom apps in the virtualenv's bin.
STORESCU = system_tool("storescu")
STORESCP = system_tool("storescp")
APPLIANCE = Path(sys.executable).with_name("appliance")
CHUNKED = ROOT / "benchmarks" / "chunked_receiver.py"
SHIPPED, ALTERNATIVE, ATTACKED = "adapter (hand-written)", "adapter (chunked)", "adapter under attack"
IDLE_ATTACKERS = 50

_STOCK_SCP = """
import os, socket, sys
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, evt
from pynetdicom.transport import ThreadedAssociationServer
out, port = sys.argv[1], int(sys.argv[2])
class Server(ThreadedAssociationServer):
    def get_request(self):
        sock, addr = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, addr
def store(event):
    with open(os.path.join(out, event.request.AffectedSOPInstanceUID), "wb") as f:
        f.write(event.encoded_dataset())
    return 0
ae = AE()
for cx in StoragePresentationContexts:
    ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
ae.make_server(("127.0.0.1", port), evt_handlers=[(evt.EVT_C_STORE, store)], server_class=Server).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


@contextmanager
def process(cmd: list[str], port: int | None, log: Path) -> Iterator[None]:
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=ENV)
        try:
            if port is not None:
                wait_port(port)
            yield
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def send(port: int, called: str, files: list[Path]) -> float:
    """Seconds storescu takes to send ``files`` over one association."""
    start = time.perf_counter()
    done = subprocess.run([str(STORESCU), "-aet", "BENCH", "-aec", called, "127.0.0.1", str(port),
                           *map(str, files)], capture_output=True, text=True, env=ENV, timeout=600)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"storescu to {called}@{port} failed: {done.stderr[-500:]}")
    return elapsed


def measure(runs: dict[str, Callable[[], float]], repeat: int) -> dict[str, float]:
    """Median seconds of each receiver over ``repeat`` rounds; each round runs every receiver once.

    Before each timed run the page cache is written out (``sync``, untimed): receivers that do
    not fsync leave ~100 MB of dirty pages per run, and their writeback would otherwise land on
    whichever receiver runs next (on ext4 it joins that receiver's journal commits).
    """
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            os.sync()
            times[name].append(run())
    for name, values in times.items():
        print(f"  {name:<24} runs: {', '.join(f'{t:.2f}' for t in values)} s", flush=True)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--rows", type=int, default=512, help="rows and columns of each slice (default 512)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--load", type=int, default=0, help="busy processes running meanwhile (default 0)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where received data goes (default: a temporary folder; same disk matters)")
    args = parser.parse_args()
    if STORESCU is None or STORESCP is None:
        print("dcmtk (storescu, storescp) is required", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="ingest-", dir=args.workdir))
    try:
        series = write_series(work / "series", args.slices, rows=args.rows, cols=args.rows)
        files = list(series.files)
        total_bytes = sum(p.stat().st_size for p in files)
        print(f"{len(files)} slices {args.rows}x{args.rows} int16, {total_bytes / 1e6:.1f} MB, {args.repeat} round(s), "
              f"receivers interleaved, {args.load} busy process(es); load average {os.getloadavg()[0]:.2f} "
              f"on {os.cpu_count()} CPU(s)", flush=True)
        with ExitStack() as receivers:
            for _ in range(args.load):
                receivers.enter_context(process([sys.executable, "-c", "while True: pass"], None, work / "load.log"))
            runs = start_receivers(receivers, work, files)
            results = measure(runs, args.repeat)
        report(results, len(files), total_bytes)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def start_receivers(stack: ExitStack, work: Path, files: list[Path]) -> dict[str, Callable[[], float]]:
    """Start every receiver (stopped when ``stack`` closes); return a timed send to each."""
    runs: dict[str, Callable[[], float]] = {}
    port = free_port()
    out = work / "dcmtk"
    out.mkdir()
    stack.enter_context(process([STORESCP, "-od", str(out), "-aet", "STORESCP", str(port)], port,
                                work / "dcmtk.log"))
    runs["dcmtk storescp"] = functools.partial(send, port, "STORESCP", files)

    orthanc = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
    if orthanc:
        port, http = free_port(), free_port()
        cfg = work / "orthanc"
        cfg.mkdir()
        (cfg / "orthanc.json").write_text(json.dumps({
            "DicomAet": "ORTHANC", "DicomPort": port, "HttpPort": http, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "StorageDirectory": str(cfg / "db"),
            "IndexDirectory": str(cfg / "db"), "Plugins": []}))

        def to_orthanc(port: int = port, http: int = http) -> float:
            elapsed = send(port, "ORTHANC", files)
            # Delete between runs so each run stores, rather than overwrites.
            req = urllib.request.Request(f"http://127.0.0.1:{http}/studies", method="GET")
            with urllib.request.urlopen(req) as r:
                for study in json.loads(r.read()):
                    urllib.request.urlopen(urllib.request.Request(
                        f"http://127.0.0.1:{http}/studies/{study}", method="DELETE")).close()
            return elapsed

        stack.enter_context(process([orthanc, str(cfg)], port, work / "orthanc.log"))
        runs["Orthanc"] = to_orthanc
    else:
        print("  Orthanc not installed: skipped")

    port = free_port()
    out = work / "pynetdicom"
    out.mkdir()
    script = work / "stock_scp.py"
    script.write_text(_STOCK_SCP)
    stack.enter_context(process([sys.executable, str(script), str(out), str(port)], port, work / "pynetdicom.log"))
    runs["pynetdicom (stock)"] = functools.partial(send, port, "ANY", files)

    for name, command in ((SHIPPED, [str(APPLIANCE), "adapter"]), (ALTERNATIVE, [sys.executable, str(CHUNKED)]),
                          (ATTACKED, [str(APPLIANCE), "adapter"])):
        port = free_port()
        folder = work / name.replace(" ", "-").replace("(", "").replace(")", "")
        config = {
            "dicom": {"scp": {"port": port, "bind-address": "127.0.0.1", "max-associations": 4,
                              "ae-titles": [{"ae-title": "OrganSeg", "destinations": "none"}]}},
            "storage": {"root": str(folder)},
            "completion": {"quiet-seconds": 0.5},
        }
        folder.mkdir()
        (folder / "adapter.yaml").write_text(yaml.safe_dump(config))
        stack.enter_context(process([*command, "--config", str(folder / "adapter.yaml"), "--log-level", "WARNING"],
                                    port, folder / "adapter.log"))
        runs[name] = functools.partial(send, port, "OrganSeg", files)
    runs[ATTACKED] = functools.partial(under_attack, runs[ATTACKED], port)
    return runs


def _drip(port: int, stop: threading.Event) -> None:
    """One association that sends a C-STORE one byte per second, holding an association slot."""
    study = "1.2.826.0.1.3680043.10.511.94"
    with suppress(OSError, rawdicom.Closed):
        assoc = rawdicom.RawAssociation.open(port, rawdicom.source_address(IDLE_ATTACKERS), calling="DRIP")
        cx = assoc.contexts[rawdicom.CT_IMAGE_STORAGE]
        assoc.sock.sendall(rawdicom.pdu((cx, rawdicom.COMMAND | rawdicom.LAST, rawdicom.store_rq(f"{study}.1"))))
        data = rawdicom.pdu((cx, rawdicom.LAST, rawdicom.dataset_head(study, f"{study}.1") + bytes(1 << 14)))
        for byte in range(len(data)):
            if stop.wait(1.0):
                break
            assoc.sock.sendall(data[byte:byte + 1])
        assoc.sock.close()


def _idle(port: int, stop: threading.Event) -> None:
    """``IDLE_ATTACKERS`` connections that never send anything, reopened when closed."""
    socks: dict[int, socket.socket] = {}
    while not stop.is_set():
        for n in range(IDLE_ATTACKERS):
            sock = socks.get(n)
            if sock is not None and not rawdicom.closed_by_peer(sock, 0):
                continue
            if sock is not None:
                sock.close()
            with suppress(OSError):
                socks[n] = rawdicom.connect(port, rawdicom.source_address(n))
        stop.wait(0.2)
    for sock in socks.values():
        sock.close()


def under_attack(run: Callable[[], float], port: int) -> float:
    """``run`` while the idle connections and the slow-drip sender are open (started untimed)."""
    stop = threading.Event()
    attackers = [threading.Thread(target=_idle, args=(port, stop)), threading.Thread(target=_drip, args=(port, stop))]
    for thread in attackers:
        thread.start()
    try:
        time.sleep(1.0)  # the connections are open and the drip has associated
        return run()
    finally:
        stop.set()
        for thread in attackers:
            thread.join(10)


def report(results: dict[str, float], count: int, total_bytes: int) -> None:
    """Print the medians, rates and the ratios that decide things."""
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    print(f"{'receiver':<24} {'median s':>9} {'inst/s':>8} {'MB/s':>8}")
    for name, seconds in results.items():
        print(f"{name:<24} {seconds:>9.3f} {count / seconds:>8.1f} {total_bytes / 1e6 / seconds:>8.1f}")
    shipped = results[SHIPPED]
    faster = results[ALTERNATIVE] / shipped
    print(f"\nRATIO hand-written receiver rate / chunked receive rate = {faster:.2f}  "
          f"(the hand-written one is kept only at >= 1.30: {'kept' if faster >= 1.3 else 'NOT justified'})")
    ratio = results["dcmtk storescp"] / shipped
    print(f"RATIO adapter rate / dcmtk rate = {ratio:.2f}  (target >= 0.50: {'met' if ratio >= 0.5 else 'NOT met'})")
    if "Orthanc" in results:
        vs_orthanc = results["Orthanc"] / shipped
        verdict = "met" if vs_orthanc > 1 else "NOT met"
        print(f"RATIO adapter rate / Orthanc rate = {vs_orthanc:.2f}  (target > 1: {verdict})")
    attacked = shipped / results[ATTACKED]
    print(f"RATIO adapter rate under attack / quiet = {attacked:.2f}  "
          f"({IDLE_ATTACKERS} idle connections and one slow-drip sender open)")


if __name__ == "__main__":
    sys.exit(main())
