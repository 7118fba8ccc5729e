"""The appliance's settings: one YAML file, read into typed, frozen dataclasses and validated at load.

The ``dicom:`` block is the one of Clara Deploy SDK 0.1.9's ``dicom-server-config.yaml``,
accepted as written. Keys the appliance adds are marked *new* below; each has a default, so an
original file loads unchanged (it then needs only a ``storage.root`` when the default does not fit).

Every problem found is reported at once, each prefixed by the key path it concerns, e.g.::

    dicom.scp.ae-titles[1].ae-title: must be 1-16 characters

Layout (defaults in brackets)::

    dicom:
      scp:
        port: 104                      # [104] TCP port of the SCP
        bind-address: 0.0.0.0          # new [0.0.0.0] listening address
        ae-titles:                     # at least one
          - ae-title: OrganSeg         # 1-16 chars, no backslash or control characters
            processors: [...]          # original: accepted, kept, not interpreted
            workflow: OrganSeg         # new [the ae-title] workflow the job runs
            destinations: [MYPACS]     # new [[]] scu destination names for results
        max-associations: 2            # [2] concurrent inbound associations
        max-pdu-bytes: 1048576         # new [1 MiB] largest PDU we receive
        network-timeout-seconds: 60    # new [60] idle/ACSE/DIMSE timeout, seconds
        verification:
          enabled: true                # [true] answer C-ECHO
          transfer-syntaxes: [...]     # [implicit LE, explicit LE, explicit BE]
        log-dimse-datasets: false      # [false] log every DIMSE message
        reject-unknown-sources: true   # [false] only listed sources may associate
        sources:                       # [[]] known calling peers
          - host-ip: 10.0.0.5
            ae-title: ORTHANC
      scu:
        ae-title: ClaraSCU             # [ClaraSCU] our AE title when exporting
        max-associations: 2            # [2] accepted, kept (exports run one at a time)
        destinations:
          - name: MYPACS
            host-ip: 10.0.0.5
            port: 4242
            ae-title: ORTHANC
    storage:                           # new
      root: /var/lib/appliance/payloads  # job payload folders live here
      database: null                   # [<root>/jobs.sqlite3] job store (SQLite, WAL)
    completion:                        # new
      quiet-seconds: 5                 # [5] a study is complete after this long without instances
    export:                            # new
      max-attempts: 5                  # [5] tries per destination, first one included
      initial-backoff-seconds: 2       # [2] wait before the 2nd try; grows by the multiplier
      backoff-multiplier: 2            # [2]
      max-backoff-seconds: 60          # [60] cap on one wait
      timeout-seconds: 30              # [30] connect/ACSE/DIMSE timeout of the SCU
    worker:                            # new: the pipeline worker (appliance worker)
      workers: 2                       # [2] jobs run at once (threads of one process)
      max-concurrent-inference: 1      # [1] requests in flight to the model server at once
      poll-seconds: 0.2                # [0.2] how often the job store is checked for ready jobs
      workflows-dir: null              # [none] folder of extra workflow YAML files (override shipped ones)
      triton:
        http-url: null                 # [the workflow's url] host:port for workflows using HTTP
        grpc-url: null                 # [the workflow's url] host:port for workflows using gRPC
      interrupted: resume              # [resume] jobs a crash left running: resume (run again) or fail
      max-resumes: 2                   # [2] resumes per attempt before the job fails instead
      shutdown-grace-seconds: 30       # [30] on SIGTERM, how long running stages may finish
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

__all__ = [
    "AdapterConfig",
    "AeTitleConfig",
    "CompletionConfig",
    "ConfigError",
    "DestinationConfig",
    "DicomConfig",
    "ExportConfig",
    "ScpConfig",
    "ScuConfig",
    "SourceConfig",
    "StorageConfig",
    "VerificationConfig",
    "WorkerConfig",
    "load",
    "parse",
]

#: The transfer syntaxes C-ECHO is offered with when the file names none (Clara's defaults).
DEFAULT_VERIFICATION_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")

_AE_KIND = "1-16 characters without backslash or control characters"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ConfigError(ValueError):
    """The configuration is invalid; ``problems`` lists each one as ``"key.path: what is wrong"``."""

    def __init__(self, problems: list[str], source: str = "configuration") -> None:
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class AeTitleConfig:
    """One AE title the SCP answers to, and what happens to studies sent to it."""

    ae_title: str
    workflow: str
    destinations: tuple[str, ...] = ()
    processors: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceConfig:
    """A peer allowed to associate when ``reject-unknown-sources`` is on: both fields must match."""

    host_ip: str
    ae_title: str


@dataclass(frozen=True)
class VerificationConfig:
    """C-ECHO: whether it is answered, and over which transfer syntaxes."""

    enabled: bool = True
    transfer_syntaxes: tuple[str, ...] = DEFAULT_VERIFICATION_SYNTAXES


@dataclass(frozen=True)
class ScpConfig:
    """The receiving side. Timeouts in seconds, sizes in bytes."""

    ae_titles: tuple[AeTitleConfig, ...]
    port: int = 104
    bind_address: str = "0.0.0.0"
    max_associations: int = 2
    max_pdu_bytes: int = 1 << 20
    network_timeout_seconds: float = 60.0
    verification: VerificationConfig = field(default_factory=VerificationConfig)
    log_dimse_datasets: bool = False
    reject_unknown_sources: bool = False
    sources: tuple[SourceConfig, ...] = ()

    def ae_title(self, called: str) -> AeTitleConfig | None:
        """The binding of ``called`` (compared without padding), or None when it is not ours."""
        called = called.strip()
        return next((a for a in self.ae_titles if a.ae_title == called), None)


@dataclass(frozen=True)
class DestinationConfig:
    """A C-STORE SCP results are sent to."""

    name: str
    host_ip: str
    port: int
    ae_title: str


@dataclass(frozen=True)
class ScuConfig:
    """The sending side."""

    ae_title: str = "ClaraSCU"
    max_associations: int = 2
    destinations: tuple[DestinationConfig, ...] = ()

    def destination(self, name: str) -> DestinationConfig | None:
        """The destination called ``name``, or None."""
        return next((d for d in self.destinations if d.name == name), None)


@dataclass(frozen=True)
class DicomConfig:
    """The ``dicom:`` block of the original ``dicom-server-config.yaml``."""

    scp: ScpConfig
    scu: ScuConfig = field(default_factory=ScuConfig)


@dataclass(frozen=True)
class StorageConfig:
    """Where payloads and the job database live."""

    root: Path
    database: Path


@dataclass(frozen=True)
class CompletionConfig:
    """When a group of received instances becomes a job."""

    quiet_seconds: float = 5.0


@dataclass(frozen=True)
class ExportConfig:
    """Retry policy of the exporter; times in seconds."""

    max_attempts: int = 5
    initial_backoff_seconds: float = 2.0
    backoff_multiplier: float = 2.0
    max_backoff_seconds: float = 60.0
    timeout_seconds: float = 30.0

    def backoff(self, failed_attempts: int) -> float:
        """Seconds to wait after the ``failed_attempts``-th failed try (1-based)."""
        delay = self.initial_backoff_seconds * self.backoff_multiplier ** (failed_attempts - 1)
        return float(min(delay, self.max_backoff_seconds))


@dataclass(frozen=True)
class WorkerConfig:
    """The pipeline worker (``appliance worker``). Times in seconds.

    ``triton_http_url``/``triton_grpc_url`` (``host:port``) replace the Triton URL of every
    workflow using that protocol; None keeps each workflow's own. ``interrupted`` says what
    happens at start to jobs a crashed or killed worker left ``running``: ``resume`` runs them
    again from the first stage (at most ``max_resumes`` times per attempt, then they fail),
    ``fail`` fails them at once.
    """

    workers: int = 2
    max_concurrent_inference: int = 1
    poll_seconds: float = 0.2
    workflows_dir: Path | None = None
    triton_http_url: str | None = None
    triton_grpc_url: str | None = None
    interrupted: Literal["resume", "fail"] = "resume"
    max_resumes: int = 2
    shutdown_grace_seconds: float = 30.0


@dataclass(frozen=True)
class AdapterConfig:
    """Everything the appliance's processes (adapter, worker, ``jobs`` CLI) read from the file."""

    dicom: DicomConfig
    storage: StorageConfig
    completion: CompletionConfig = field(default_factory=CompletionConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)


# --------------------------------------------------------------------------------------------
# Validation. A _Node walks the raw YAML, remembers its key path, and files every problem in
# one shared list instead of raising at the first: an operator fixes a file in one go.

T = TypeVar("T")
_MISSING = object()


class _Node:
    def __init__(self, value: Any, path: str, problems: list[str]) -> None:
        self.value = value
        self.path = path
        self.problems = problems

    def problem(self, message: str, key: str | None = None) -> None:
        where = self._join(key) if key is not None else (self.path or "(top level)")
        self.problems.append(f"{where}: {message}")

    def _join(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def mapping(self, allowed: tuple[str, ...]) -> bool:
        """Check this node is a mapping whose keys are all in ``allowed``; False if not a mapping."""
        if not isinstance(self.value, Mapping):
            self.problem(f"must be a mapping, not {_kind(self.value)}")
            return False
        for key in self.value:
            if key not in allowed:
                self.problem(f"unknown key (expected one of: {', '.join(allowed)})", str(key))
        return True

    def child(self, key: str) -> _Node:
        value = self.value.get(key, _MISSING) if isinstance(self.value, Mapping) else _MISSING
        return _Node(value, self._join(key), self.problems)

    def items(self) -> Iterator[_Node]:
        if not isinstance(self.value, list):
            self.problem(f"must be a list, not {_kind(self.value)}")
            return
        for i, item in enumerate(self.value):
            yield _Node(item, f"{self.path}[{i}]", self.problems)

    @property
    def missing(self) -> bool:
        return self.value is _MISSING

    def get(self, kind: str, check: Callable[[Any], T | None], default: Any = _MISSING) -> Any:
        """Convert with ``check`` (None means invalid: report "must be <kind>"); apply the default."""
        if self.value is _MISSING or self.value is None:
            if default is _MISSING:
                self.problem("is required")
            return None if default is _MISSING else default
        converted = check(self.value)
        if converted is None:
            self.problem(f"must be {kind}, not {self.value!r}")
            return None if default is _MISSING else default
        return converted


def _kind(value: Any) -> str:
    if value is _MISSING:
        return "missing"
    return "null" if value is None else type(value).__name__


def _integer(low: int, high: int) -> Callable[[Any], int | None]:
    def check(v: Any) -> int | None:
        return v if isinstance(v, int) and not isinstance(v, bool) and low <= v <= high else None

    return check


def _number(low: float, high: float) -> Callable[[Any], float | None]:
    def check(v: Any) -> float | None:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high
        return float(v) if ok else None

    return check


def _boolean(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def _ae_title(v: Any) -> str | None:
    # PS3.5 AE VR: 16 characters, default repertoire, no backslash or control characters;
    # leading/trailing spaces are padding and not significant.
    if not isinstance(v, str):
        return None
    s = v.strip()
    ok = 1 <= len(s) <= 16 and all(32 <= ord(c) < 127 and c != "\\" for c in s)
    return s if ok else None


def _ip(v: Any) -> str | None:
    if not isinstance(v, str):
        return None
    try:
        return str(ipaddress.ip_address(v.strip()))
    except ValueError:
        return None


def _host(v: Any) -> str | None:
    # Destinations may be names (resolved at connect time); sources must be addresses because
    # they are compared with the peer's address.
    if not isinstance(v, str) or not v.strip():
        return None
    return v.strip() if re.fullmatch(r"[A-Za-z0-9._:-]{1,253}", v.strip()) else None


def _uid(v: Any) -> str | None:
    return v if isinstance(v, str) and len(v) <= 64 and _UID.match(v) else None


def _name(v: Any) -> str | None:
    return v if isinstance(v, str) and _NAME.match(v) else None


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) and v.strip() else None


def _path(v: Any) -> Path | None:
    return Path(v) if isinstance(v, str) and v.strip() else None


def _strings(node: _Node, check: Callable[[Any], str | None], kind: str) -> tuple[str, ...]:
    if node.missing or node.value is None:
        return ()
    out: list[str] = []
    for item in node.items():
        value = item.get(kind, check)
        if value is not None:
            out.append(value)
    return tuple(out)


def _ae_titles(node: _Node) -> tuple[AeTitleConfig, ...]:
    found: list[AeTitleConfig] = []
    if node.missing:
        node.problem("is required (at least one AE title)")
        return ()
    for item in node.items():
        if not item.mapping(("ae-title", "processors", "workflow", "destinations")):
            continue
        title = item.child("ae-title").get(_AE_KIND, _ae_title)
        workflow = item.child("workflow").get("a workflow name ([A-Za-z0-9._-], 1-64)", _name,
                                              default=None)
        dests = _strings(item.child("destinations"), _name, "a destination name")
        procs = _strings(item.child("processors"), _text, "a non-empty string")
        if title is None:
            continue
        if any(a.ae_title == title for a in found):
            item.problem(f"duplicate AE title {title!r}", "ae-title")
        found.append(AeTitleConfig(title, workflow or _safe_workflow(title), dests, procs))
    if not found and not node.problems:
        node.problem("must list at least one AE title")
    return tuple(found)


def _safe_workflow(title: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", title)


def _scp(node: _Node) -> ScpConfig | None:
    if node.missing:
        node.problem("is required")
        return None
    keys = ("port", "bind-address", "ae-titles", "max-associations", "max-pdu-bytes",
            "network-timeout-seconds", "verification", "log-dimse-datasets",
            "reject-unknown-sources", "sources")
    if not node.mapping(keys):
        return None
    ae_titles = _ae_titles(node.child("ae-titles"))
    port = node.child("port").get("a port number 1-65535", _integer(1, 65535), default=104)
    bind = node.child("bind-address").get("an IP address", _ip, default="0.0.0.0")
    max_assoc = node.child("max-associations").get("an integer 1-1000", _integer(1, 1000), default=2)
    max_pdu = node.child("max-pdu-bytes").get(
        "an integer 4096-16777216", _integer(4096, 1 << 24), default=1 << 20)
    timeout = node.child("network-timeout-seconds").get(
        "a number of seconds 0.1-3600", _number(0.1, 3600), default=60.0)
    verification = VerificationConfig()
    vnode = node.child("verification")
    if not vnode.missing and vnode.mapping(("enabled", "transfer-syntaxes")):
        syntaxes = _strings(vnode.child("transfer-syntaxes"), _uid, "a transfer syntax UID")
        verification = VerificationConfig(
            enabled=vnode.child("enabled").get("true or false", _boolean, default=True),
            transfer_syntaxes=syntaxes or DEFAULT_VERIFICATION_SYNTAXES,
        )
    sources: list[SourceConfig] = []
    snode = node.child("sources")
    if not snode.missing and snode.value is not None:
        for item in snode.items():
            if not item.mapping(("host-ip", "ae-title")):
                continue
            ip = item.child("host-ip").get("an IP address", _ip)
            title = item.child("ae-title").get(_AE_KIND, _ae_title)
            if ip is not None and title is not None:
                sources.append(SourceConfig(ip, title))
    reject = node.child("reject-unknown-sources").get("true or false", _boolean, default=False)
    if reject and not sources:
        node.problem("is true but dicom.scp.sources lists no source: every peer would be refused",
                     "reject-unknown-sources")
    return ScpConfig(
        ae_titles=ae_titles,
        port=port,
        bind_address=bind,
        max_associations=max_assoc,
        max_pdu_bytes=max_pdu,
        network_timeout_seconds=timeout,
        verification=verification,
        log_dimse_datasets=node.child("log-dimse-datasets").get("true or false", _boolean,
                                                                 default=False),
        reject_unknown_sources=reject,
        sources=tuple(sources),
    )


def _scu(node: _Node) -> ScuConfig:
    if node.missing or node.value is None:
        return ScuConfig()
    if not node.mapping(("ae-title", "max-associations", "destinations")):
        return ScuConfig()
    dests: list[DestinationConfig] = []
    dnode = node.child("destinations")
    if not dnode.missing and dnode.value is not None:
        for item in dnode.items():
            if not item.mapping(("name", "host-ip", "port", "ae-title")):
                continue
            name = item.child("name").get("a name ([A-Za-z0-9._-], 1-64)", _name)
            host = item.child("host-ip").get("a host name or IP address", _host)
            port = item.child("port").get("a port number 1-65535", _integer(1, 65535))
            title = item.child("ae-title").get(_AE_KIND, _ae_title)
            if None in (name, host, port, title):
                continue
            if any(d.name == name for d in dests):
                item.problem(f"duplicate destination name {name!r}", "name")
            dests.append(DestinationConfig(name, host, port, title))
    return ScuConfig(
        ae_title=node.child("ae-title").get(_AE_KIND, _ae_title, default="ClaraSCU"),
        max_associations=node.child("max-associations").get("an integer 1-1000",
                                                            _integer(1, 1000), default=2),
        destinations=tuple(dests),
    )


def _url(v: Any) -> str | None:
    # tritonclient takes host:port without a scheme; a scheme is tolerated and stripped.
    if not isinstance(v, str):
        return None
    hostport = v.strip().split("://", 1)[-1]
    return hostport if re.fullmatch(r"[A-Za-z0-9._\[\]:-]{1,253}:[0-9]{1,5}", hostport) else None


def _choice(*allowed: str) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return v if v in allowed else None

    return check


def _worker(node: _Node) -> WorkerConfig:
    keys = ("workers", "max-concurrent-inference", "poll-seconds", "workflows-dir", "triton",
            "interrupted", "max-resumes", "shutdown-grace-seconds")
    if node.missing or node.value is None or not node.mapping(keys):
        return WorkerConfig()
    http_url = grpc_url = None
    tnode = node.child("triton")
    if not tnode.missing and tnode.value is not None and tnode.mapping(("http-url", "grpc-url")):
        http_url = tnode.child("http-url").get("host:port", _url, default=None)
        grpc_url = tnode.child("grpc-url").get("host:port", _url, default=None)
    return WorkerConfig(
        workers=node.child("workers").get("an integer 1-64", _integer(1, 64), default=2),
        max_concurrent_inference=node.child("max-concurrent-inference").get(
            "an integer 1-64", _integer(1, 64), default=1),
        poll_seconds=node.child("poll-seconds").get("a number of seconds 0.01-60", _number(0.01, 60),
                                                    default=0.2),
        workflows_dir=node.child("workflows-dir").get("a directory path", _path, default=None),
        triton_http_url=http_url,
        triton_grpc_url=grpc_url,
        interrupted=node.child("interrupted").get("resume or fail", _choice("resume", "fail"),
                                                  default="resume"),
        max_resumes=node.child("max-resumes").get("an integer 0-100", _integer(0, 100), default=2),
        shutdown_grace_seconds=node.child("shutdown-grace-seconds").get(
            "a number of seconds 0-3600", _number(0, 3600), default=30.0),
    )


def _check_bindings(root: _Node, scp: ScpConfig, scu: ScuConfig) -> None:
    # A destination an AE title names must exist, or results would be silently dropped.
    names = {d.name for d in scu.destinations}
    for i, ae in enumerate(scp.ae_titles):
        for j, dest in enumerate(ae.destinations):
            if dest not in names:
                root.problems.append(
                    f"dicom.scp.ae-titles[{i}].destinations[{j}]: unknown destination {dest!r} "
                    f"(not in dicom.scu.destinations)")


def parse(raw: Any, source: str = "configuration") -> AdapterConfig:
    """Validate an already-loaded YAML document and build the settings; raise ConfigError."""
    problems: list[str] = []
    root = _Node(raw, "", problems)
    if not root.mapping(("dicom", "storage", "completion", "export", "worker")):
        raise ConfigError(problems, source)

    dicom = root.child("dicom")
    scp: ScpConfig | None = None
    scu = ScuConfig()
    if dicom.missing:
        dicom.problem("is required")
    elif dicom.mapping(("scp", "scu")):
        scp = _scp(dicom.child("scp"))
        scu = _scu(dicom.child("scu"))

    storage = root.child("storage")
    storage_cfg: StorageConfig | None = None
    if storage.missing:
        storage.problem("is required (storage.root names the payload folder)")
    elif storage.mapping(("root", "database")):
        root_dir = storage.child("root").get("a directory path", _path)
        database = storage.child("database").get("a file path", _path, default=None)
        if root_dir is not None:
            storage_cfg = StorageConfig(root_dir, database or root_dir / "jobs.sqlite3")

    completion = CompletionConfig()
    cnode = root.child("completion")
    if not cnode.missing and cnode.mapping(("quiet-seconds",)):
        completion = CompletionConfig(cnode.child("quiet-seconds").get(
            "a number of seconds 0.1-86400", _number(0.1, 86400), default=5.0))

    export = ExportConfig()
    enode = root.child("export")
    if not enode.missing and enode.mapping(("max-attempts", "initial-backoff-seconds",
                                            "backoff-multiplier", "max-backoff-seconds",
                                            "timeout-seconds")):
        export = ExportConfig(
            max_attempts=enode.child("max-attempts").get("an integer 1-100", _integer(1, 100),
                                                         default=5),
            initial_backoff_seconds=enode.child("initial-backoff-seconds").get(
                "a number of seconds 0-3600", _number(0, 3600), default=2.0),
            backoff_multiplier=enode.child("backoff-multiplier").get(
                "a number 1-10", _number(1, 10), default=2.0),
            max_backoff_seconds=enode.child("max-backoff-seconds").get(
                "a number of seconds 0-86400", _number(0, 86400), default=60.0),
            timeout_seconds=enode.child("timeout-seconds").get(
                "a number of seconds 0.1-3600", _number(0.1, 3600), default=30.0),
        )

    worker = _worker(root.child("worker"))

    if scp is not None:
        _check_bindings(root, scp, scu)
    if problems or scp is None or storage_cfg is None:
        raise ConfigError(problems, source)
    return AdapterConfig(DicomConfig(scp, scu), storage_cfg, completion, export, worker)


def load(path: Path | str) -> AdapterConfig:
    """Read and validate the YAML file at ``path``; raise ConfigError naming each bad key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"(file): cannot read: {exc.strerror or exc}"], str(path)) from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"(file): not valid YAML: {exc}"], str(path)) from exc
    return parse(raw, str(path))
