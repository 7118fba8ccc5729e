"""The services' configuration file (``/etc/appliance/adapter.yaml``): adapter, worker, exporter, dashboard.

The ``dicom:`` block is the one of Clara Deploy SDK 0.1.9's ``dicom-server-config.yaml``, accepted
as written; the other blocks and the keys marked *new* are the appliance's own. The original file
given alone is a valid configuration: storage has a default, and AE titles that name no
destinations send their results to the file's one ``dicom.scu`` destination. Keys are kebab-case
(``max-associations``); each field's description gives its meaning and unit, and docs/adapter.md
lists them all (a test keeps that table in step with this schema).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, TypeAdapter, ValidationInfo, with_config

from appliance.jobs.retention import RetentionPolicy
from appliance.settings.source import Loc, SettingsError, located, read, validate
from appliance.settings.types import (
    KEBAB_KEYS,
    AeTitle,
    DatabaseUrl,
    FilePath,
    Flag,
    Host,
    HostPort,
    Int,
    IpAddress,
    Name,
    Number,
    Text,
    Uid,
    conflict,
    unique,
)
from appliance.storage.filesystem import mount_of

#: The transfer syntaxes C-ECHO is offered with when the file names none (Clara's defaults).
DEFAULT_VERIFICATION_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")
#: Where payload folders go when the file has no ``storage`` block (the role's default too).
DEFAULT_STORAGE_ROOT = Path("/var/lib/appliance/payloads")
#: ``destinations: none``: the results stay on this host, on purpose.
NO_DESTINATIONS = "none"


def _known_destination(name: str, info: ValidationInfo) -> str:
    names = (info.context or {}).get("destinations", [])
    if name not in names:
        raise conflict(f"unknown destination {name!r} (not in dicom.scu.destinations: {', '.join(names) or 'none'})")
    return name


def _explicit_destinations(value: Any, info: ValidationInfo) -> Any:
    # An AE title whose results go nowhere must say so: a forgotten list would drop every result.
    if value == NO_DESTINATIONS:
        return ()
    if value is None or value == []:
        names = (info.context or {}).get("destinations", [])
        add = (f"destinations: [{names[0]}]" + (f" (any of {', '.join(names)})" if len(names) > 1 else "")
               if names else "a destination to dicom.scu.destinations and its name here")
        raise conflict(f"AE title {info.data.get('ae_title', '?')} sends its results nowhere: add {add}, "
                       f"or write 'destinations: {NO_DESTINATIONS}' to keep them on this host only")
    return value


def _lone_destination(item: Any, info: ValidationInfo) -> Any:
    # The original SDK file has no per-AE destinations: with exactly one SCU destination, results go
    # there. Otherwise the key is left empty and _explicit_destinations says what to add.
    if isinstance(item, dict) and "destinations" not in item:
        names = (info.context or {}).get("destinations", [])
        return {**item, "destinations": names if len(names) == 1 else None}
    return item


_NAME: TypeAdapter[str] = TypeAdapter(Name)


def _workflow_name(value: str) -> str:
    return _NAME.validate_python(value) if value else value


@with_config(KEBAB_KEYS)
@dataclass(frozen=True)
class AeTitleConfig:
    """One AE title the SCP answers to, and what happens to the studies sent to it."""

    ae_title: Annotated[AeTitle, Field(description="an AE title we answer to (1-16 characters)")]
    destinations: Annotated[
        tuple[Annotated[Name, AfterValidator(_known_destination)], ...],
        BeforeValidator(_explicit_destinations),
        Field(description="(new) names from dicom.scu.destinations that get the results, or `none` (they stay "
                          "on this host); may be left out when dicom.scu has exactly one destination: then that one"),
    ]
    processors: Annotated[tuple[Text, ...], Field(description="original key; kept, not interpreted")] = ()
    workflow: Annotated[str, AfterValidator(_workflow_name),
                        Field(description="(new) workflow the jobs of this AE title run; default: the AE title")] = ""

    def __post_init__(self) -> None:
        if not self.workflow:
            object.__setattr__(self, "workflow", re.sub(r"[^A-Za-z0-9._-]", "_", self.ae_title))


@with_config(KEBAB_KEYS)
@dataclass(frozen=True)
class SourceConfig:
    """A peer allowed to associate when ``reject-unknown-sources`` is on: both fields must match."""

    host_ip: Annotated[IpAddress, Field(description="the peer's IP address")]
    ae_title: Annotated[AeTitle, Field(description="the peer's calling AE title")]


@with_config(KEBAB_KEYS)
@dataclass(frozen=True)
class VerificationConfig:
    """C-ECHO: whether it is answered, and over which transfer syntaxes."""

    enabled: Annotated[Flag, Field(description="answer C-ECHO")] = True
    transfer_syntaxes: Annotated[tuple[Uid, ...], Field(
        description="transfer syntaxes C-ECHO is accepted with; empty: implicit LE, explicit LE, explicit BE",
    )] = DEFAULT_VERIFICATION_SYNTAXES

    def __post_init__(self) -> None:
        if not self.transfer_syntaxes:
            object.__setattr__(self, "transfer_syntaxes", DEFAULT_VERIFICATION_SYNTAXES)


def _needs_ca(required: bool, info: ValidationInfo) -> bool:
    if required and info.data.get("ca_certificates") is None:
        raise conflict("is true but ca-certificates is not set: client certificates cannot be verified")
    return required


@with_config(KEBAB_KEYS)
@dataclass(frozen=True)
class ScpTlsConfig:
    """TLS on the SCP's port: when set, the port speaks DICOM over TLS only (PS3.15 B.1)."""

    certificate: Annotated[FilePath, Field(description=(
        "(new) our certificate (PEM; intermediate certificates after it) presented to senders"))]
    private_key: Annotated[FilePath, Field(description="(new) its private key (PEM, not encrypted)")]
    ca_certificates: Annotated[FilePath | None, Field(description=(
        "(new) CA certificates (PEM) that senders' certificates must chain to; a sender that presents "
        "one that does not is refused"))] = None
    require_client_certificate: Annotated[Flag, AfterValidator(_needs_ca), Field(description=(
        "(new) mutual TLS: refuse senders without a certificate from ca-certificates"))] = False


@with_config(KEBAB_KEYS)
@dataclass(frozen=True)
class ScuTlsConfig:
    """TLS towards one destination."""

    ca_certificates: Annotated[FilePath | None, Field(description=(
        "(new) CA certificates (PEM) the destination's certificate must chain to; default: the "
        "system's trusted CAs"))] = None
    check_hostname: Annotated[Flag, Field(description=(
        "(new) the destination's certificate must name host-ip (DNS name or IP address)"))] = True
    certificate: Annotated[FilePath | None, Field(description=(
        "(new) our client certificate (PEM), for destinations that require one (mutual TLS)"))] = None
    private_key: Annotated[FilePath | None, Field(description=(
        "(new) its private key (PEM, not encrypted); set with certificate"))] = None

    def __post_init__(self) -> None:
        if (self.certificate is None) != (self.private_key is None):
            raise conflict("certificate and private-key go together: set both or neither",
                           "private-key" if self.private_key is None else "certificate")


def _sources_listed(reject: bool, info: ValidationInfo) -> bool:
    if reject and not info.data.get("sources", True):
        raise conflict("is true but dicom.scp.sources lists no source: every peer would be refused")
    return reject


@with_config(KEBAB_KEYS)
@dataclass(frozen=True)
class ScpConfig:
    """The receiving side."""

    ae_titles: Annotated[
        tuple[Annotated[AeTitleConfig, BeforeValidator(_lone_destination)], ...],
        unique("ae-title", "AE title"),
        Field(min_length=1, description="the AE titles we answer to, at least one"),
    ]
    port: Annotated[Int, Field(ge=1, le=65535, description="TCP port of the SCP")] = 104
    bind_address: Annotated[IpAddress, Field(description="(new) listening address")] = "0.0.0.0"
    max_associations: Annotated[Int, Field(ge=1, le=1000, description="concurrent inbound associations; "
                                                                     "more are refused")] = 2
    max_pdu_bytes: Annotated[Int, Field(ge=4096, le=1 << 24, description="(new) largest PDU we accept, in bytes; "
                                                                        "larger ones drop the connection")] = 1 << 20
    network_timeout_seconds: Annotated[Number, Field(ge=0.1, le=3600, description="(new) idle, ACSE and DIMSE "
                                                                                 "timeout, in seconds")] = 60.0
    artim_seconds: Annotated[Number, Field(ge=0.1, le=3600, description=(
        "(new) a connection that has not sent a whole A-ASSOCIATE-RQ this long after it was accepted is "
        "closed, in seconds (PS3.8 ARTIM)"))] = 10.0
    max_pending_connections: Annotated[Int, Field(ge=1, le=100000, description=(
        "(new) connections accepted but not yet associated, from all sources; over it the oldest is "
        "closed"))] = 64
    max_pending_per_source: Annotated[Int, Field(ge=1, le=100000, description=(
        "(new) the same, from one IP address"))] = 8
    head_memory_bytes: Annotated[Int, Field(ge=4096, le=1 << 30, description=(
        "(new) dataset bytes held in memory per instance until its StudyInstanceUID has been read; more "
        "wait in an unnamed file on the storage root"))] = 1 << 20
    duplicates: Annotated[Literal["keep-first", "refuse"], Field(description=(
        "(new) an instance whose SOP Instance UID is already in its open study: `keep-first` acknowledges "
        "it (0x0000) and drops it, `refuse` answers 0x0111; either way the first stays and a warning is "
        "logged"))] = "keep-first"
    verification: Annotated[VerificationConfig, Field(description="C-ECHO")] = field(
        default_factory=VerificationConfig)
    log_dimse_datasets: Annotated[Flag, Field(description="log every DIMSE message (pynetdicom's debug log)")] = False
    sources: Annotated[tuple[SourceConfig, ...], Field(description="known peers")] = ()
    reject_unknown_sources: Annotated[Flag, AfterValidator(_sources_listed), Field(
        description="only `sources` may associate (needs at least one source)")] = False
    tls: Annotated[ScpTlsConfig | None, Field(description="(new) TLS on the port; none: plain TCP")] = None

    def ae_title(self, called: str) -> AeTitleConfig | None:
        """The binding of ``called`` (compared without padding), or None when it is not ours."""
        called = called.strip()
        return next((a for a in self.ae_titles if a.ae_title == called), None)


@with_config(KEBAB_KEYS)
@dataclass(frozen=True)
class DestinationConfig:
    """A C-STORE SCP results are sent to."""

    name: Annotated[Name, Field(description="the name AE titles use for it")]
    host_ip: Annotated[Host, Field(description="its host name or IP address")]
    port: Annotated[Int, Field(ge=1, le=65535, description="its TCP port")]
    ae_title: Annotated[AeTitle, Field(description="its AE title (our called AE title)")]
    tls: Annotated[ScuTlsConfig | None, Field(description="(new) send over TLS; none: plain TCP")] = None


@with_config(KEBAB_KEYS)
@dataclass(frozen=True)
class ScuConfig:
    """The sending side."""

    ae_title: Annotated[AeTitle, Field(description="our calling AE title when exporting")] = "ClaraSCU"
    max_associations: Annotated[Int, Field(ge=1, le=1000, description="associations each exporter opens to one "
                                                                     "destination at once (its senders)")] = 2
    destinations: Annotated[tuple[DestinationConfig, ...], unique("name", "destination name"),
                            Field(description="C-STORE SCPs results go to")] = ()

    def destination(self, name: str) -> DestinationConfig | None:
        """The destination called ``name``, or None."""
        return next((d for d in self.destinations if d.name == name), None)


@with_config(KEBAB_KEYS)
@dataclass(frozen=True)
class DicomConfig:
    """The ``dicom:`` block of the original ``dicom-server-config.yaml``."""

    scp: Annotated[ScpConfig, Field(description="the receiving side")]
    scu: Annotated[ScuConfig, Field(description="the sending side")] = field(default_factory=ScuConfig)



def _local_database(storage: StorageConfig) -> StorageConfig:
    # SQLite's locks and WAL index need one kernel: on NFS, CIFS ... the WAL gets corrupted.
    if storage.database_url is None:
        mount = mount_of(storage.database.parent)
        if mount is not None and mount.network:
            raise conflict(f"{storage.database} is on a network filesystem ({mount.fstype} {mount.source} at "
                           f"{mount.point}): a SQLite job store must be on a local disk; for several hosts "
                           "set storage.database-url to a PostgreSQL database", "database")
    return storage


@with_config(KEBAB_KEYS)
@dataclass(frozen=True)
class StorageConfig:
    """Where payloads and the job store live."""

    root: Annotated[FilePath, Field(description="(new) folder holding one payload folder per job; may be a network "
                                                "filesystem (NFS) that several hosts share")] = DEFAULT_STORAGE_ROOT
    database: Annotated[FilePath, Field(description="(new) the job store of a single host (SQLite, WAL mode); "
                                                    "relative to root; must be on a local disk")] = (
        Path("jobs.sqlite3"))
    database_url: Annotated[DatabaseUrl | None, Field(
        description="(new) `postgresql://USER@HOST:PORT/DATABASE`: the job store on PostgreSQL, shared by every "
                    "host of a fleet (any number of adapters, workers and exporters); replaces `database`. A "
                    "password may come from ~/.pgpass or PGPASSWORD instead of the URL")] = None
    lease_seconds: Annotated[Number, Field(ge=3, le=3600, description="(new) a claimed job or export task whose "
                                           "process stops renewing it for this long (it died, or its host was "
                                           "lost) is taken over by another process, in seconds")] = 30.0

    def __post_init__(self) -> None:
        if not self.database.is_absolute():
            object.__setattr__(self, "database", self.root / self.database)

    @property
    def job_store(self) -> str | Path:
        """What :func:`appliance.jobs.open_database` opens: the URL when set, else the SQLite file."""
        return self.database_url if self.database_url is not None else self.database


@with_config(KEBAB_KEYS)
@dataclass(frozen=True)
class CompletionConfig:
    """When a group of received instances becomes a job."""

    quiet_seconds: Annotated[Number, Field(ge=0.1, le=86400, description="(new) a study is complete after this "
                                                                       "many seconds without a new instance")] = 5.0


@with_config(KEBAB_KEYS)
@dataclass(frozen=True)
class ExportConfig:
    """Retry policy of the exporter."""

    max_attempts: Annotated[Int, Field(ge=1, le=100, description="(new) tries per destination, the first "
                                                                "included")] = 5
    initial_backoff_seconds: Annotated[Number, Field(ge=0, le=3600, description="(new) seconds to wait after the "
                                                                              "first failed try")] = 2.0
    backoff_multiplier: Annotated[Number, Field(ge=1, le=10, description="(new) each further wait is this many "
                                                                       "times longer")] = 2.0
    max_backoff_seconds: Annotated[Number, Field(ge=0, le=86400, description="(new) cap on one wait, in "
                                                                           "seconds")] = 60.0
    timeout_seconds: Annotated[Number, Field(ge=0.1, le=3600, description="(new) connect, ACSE and DIMSE timeout "
                                                                        "of the SCU, in seconds")] = 30.0

    def backoff(self, failed_attempts: int) -> float:
        """Seconds to wait after the ``failed_attempts``-th failed try (1-based)."""
        delay = self.initial_backoff_seconds * self.backoff_multiplier ** (failed_attempts - 1)
        return float(min(delay, self.max_backoff_seconds))


@with_config(KEBAB_KEYS)
@dataclass(frozen=True)
class RetentionConfig:
    """Which finished jobs the exporter removes (folder and records); nothing set keeps every job.

    Only jobs whose results reached every destination are removed by age or watermark; failed jobs
    only by their own age; jobs still receiving, queued, running or exporting never.
    """

    max_age_days: Annotated[Number | None, Field(ge=0, le=36500, description=(
        "(new) delivered jobs are removed this many days after they finished; unset: kept"))] = None
    failed_max_age_days: Annotated[Number | None, Field(ge=0, le=36500, description=(
        "(new) failed jobs are removed this many days after they failed; unset: kept until an operator acts "
        "(`appliance jobs retry`)"))] = None
    disk_watermark_percent: Annotated[Number | None, Field(gt=0, lt=100, description=(
        "(new) while the filesystem of storage.root is fuller than this (used/total, percent), the oldest "
        "delivered jobs are removed; unset: no watermark"))] = None
    interval_seconds: Annotated[Number, Field(ge=1, le=86400, description=(
        "(new) how often the exporter applies the policy, in seconds"))] = 600.0

    @property
    def policy(self) -> RetentionPolicy:
        """The policy as :class:`appliance.jobs.Pruner` takes it."""
        return RetentionPolicy(self.max_age_days, self.failed_max_age_days, self.disk_watermark_percent)


@with_config(KEBAB_KEYS)
@dataclass(frozen=True)
class TritonUrls:
    """Triton endpoints that replace the workflows' own, per protocol (None keeps each workflow's),
    and the key of the server's restricted APIs."""

    http_url: Annotated[HostPort | None, Field(description="(new) host:port for workflows using HTTP")] = None
    grpc_url: Annotated[HostPort | None, Field(description="(new) host:port for workflows using gRPC")] = None
    key_file: Annotated[FilePath | None, Field(
        description="(new) file holding the key of the server's restricted APIs (shared memory, model control), "
                    "sent with every request; the triton role writes /var/lib/triton/api-key")] = None


@with_config(KEBAB_KEYS)
@dataclass(frozen=True)
class WorkerConfig:
    """The pipeline worker (``appliance worker``)."""

    workers: Annotated[Int, Field(ge=1, le=64, description="(new) jobs run at once (threads of one process)")] = 2
    max_concurrent_inference: Annotated[Int, Field(ge=1, le=64, description="(new) requests in flight to the model "
                                                                           "server at once")] = 1
    poll_seconds: Annotated[Number, Field(ge=0.01, le=60, description="(new) how often the job store is checked "
                                                                     "for ready jobs, in seconds")] = 0.2
    workflows_dir: Annotated[FilePath | None, Field(description="(new) folder of extra workflow files, "
                                                               "overriding shipped ones of the same name")] = None
    triton: Annotated[TritonUrls, Field(description="(new) Triton endpoints")] = field(default_factory=TritonUrls)
    interrupted: Annotated[Literal["resume", "fail"], Field(
        description="(new) jobs a crash left running: resume (run again from the first stage) or fail")] = "resume"
    max_resumes: Annotated[Int, Field(ge=0, le=100, description="(new) resumes per attempt before the job fails "
                                                               "instead")] = 2
    shutdown_grace_seconds: Annotated[Number, Field(ge=0, le=3600, description="(new) on SIGTERM, how long running "
                                                                             "stages may finish, in seconds")] = 30.0
    memory_per_job_mb: Annotated[Int, Field(ge=512, le=1 << 20, description=(
        "(new) memory one job may use, in MB: the reader refuses a larger series, and the worker refuses to start "
        "when workers x this exceeds the host's memory; 400 MB + 6 bytes per voxel (docs/pipeline.md, memory), "
        "the default fits 2,000 slices of 512 x 512"))] = 3400


#: The dashboard's roles, least to most: viewers look, operators act on jobs and intake, admins also
#: see the audit log.
ROLES = ("viewer", "operator", "admin")


def _argon2_hash(value: str) -> str:
    # Only the encoded argon2 form is accepted: a plain password in the file must never work.
    if not re.fullmatch(r"\$argon2(id|i|d)\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+", value):
        raise conflict("must be an argon2 hash ($argon2id$v=19$m=...); make one with 'appliance dashboard-password'")
    return value


@with_config(KEBAB_KEYS)
@dataclass(frozen=True)
class DashboardUser:
    """One person who may log in to the dashboard."""

    name: Annotated[Name, Field(description="(new) login name")]
    password_hash: Annotated[str, AfterValidator(_argon2_hash), Field(
        description="(new) argon2 hash of the password (`appliance dashboard-password` makes one)")]
    role: Annotated[Literal["viewer", "operator", "admin"], Field(
        description="(new) viewer: sees jobs, health and results; operator: also retries, cancels, sends, "
                    "pauses intake; admin: also reads the audit log")] = "viewer"


def _tls_pair(key: Path | None, info: ValidationInfo) -> Path | None:
    if (key is None) != (info.data.get("tls_certificate") is None):
        raise conflict("tls-certificate and tls-key go together: give both (HTTPS) or neither (HTTP)")
    return key


def _below_warning(value: float, info: ValidationInfo) -> float:
    if value > info.data.get("storage_warn_free_percent", 100):
        raise conflict("must not be above storage-warn-free-percent")
    return value


@with_config(KEBAB_KEYS)
@dataclass(frozen=True)
class DashboardConfig:
    """The operator's web dashboard and result viewer (``appliance dashboard``)."""

    bind_address: Annotated[IpAddress, Field(description="(new) listening address")] = "127.0.0.1"
    port: Annotated[Int, Field(ge=1, le=65535, description="(new) TCP port (HTTPS when a certificate is set)")] = 8443
    tls_certificate: Annotated[FilePath | None, Field(
        description="(new) PEM certificate chain; with tls-key the dashboard serves HTTPS only")] = None
    tls_key: Annotated[FilePath | None, AfterValidator(_tls_pair), Field(
        description="(new) PEM private key of the certificate")] = None
    users: Annotated[tuple[DashboardUser, ...], unique("name", "user name"), Field(
        description="(new) who may log in; the dashboard refuses to start without one")] = ()
    session_minutes: Annotated[Number, Field(ge=1, le=10080, description="(new) a login ends after this many "
                                                                       "minutes without a request")] = 480.0
    cache_dir: Annotated[FilePath, Field(description="(new) previews and viewer volumes the dashboard makes; "
                                                     "relative to storage.root")] = Path(".dashboard")
    log_files: Annotated[tuple[FilePath, ...], Field(
        description="(new) service log files a job's log lines are read from; empty: the systemd journal of "
                    "the appliance's units")] = ()
    storage_warn_free_percent: Annotated[Number, Field(ge=0, le=100, description="(new) storage root free space "
                                                                              "below this shows a warning")] = 15.0
    storage_min_free_percent: Annotated[Number, AfterValidator(_below_warning), Field(
        ge=0, le=100, description="(new) free space below this is critical (kubelet's nodefs.available "
                                  "eviction threshold by default)")] = 10.0


@with_config(KEBAB_KEYS)
@dataclass(frozen=True)
class AdapterConfig:
    """Everything the appliance's services (adapter, worker, exporter, dashboard, ``jobs`` CLI) read from the file."""

    dicom: Annotated[DicomConfig, Field(description="the original dicom-server-config.yaml block")]
    storage: Annotated[StorageConfig, AfterValidator(_local_database),
                       Field(description="(new) payload folders and job store")] = field(default_factory=StorageConfig)
    completion: Annotated[CompletionConfig, Field(description="(new) when a study is complete")] = field(
        default_factory=CompletionConfig)
    export: Annotated[ExportConfig, Field(description="(new) the exporter's retries")] = field(
        default_factory=ExportConfig)
    worker: Annotated[WorkerConfig, Field(description="(new) the pipeline worker")] = field(
        default_factory=WorkerConfig)
    dashboard: Annotated[DashboardConfig, Field(description="(new) the web dashboard")] = field(
        default_factory=DashboardConfig)
    retention: Annotated[RetentionConfig, Field(description="(new) which finished jobs are removed")] = field(
        default_factory=RetentionConfig)


SCHEMA = TypeAdapter(AdapterConfig)


def _destination_names(raw: Any) -> list[str]:
    # The AE titles' destination names are checked against these while the file is validated, so
    # that a bad name is reported together with every other problem.
    try:
        destinations = raw["dicom"]["scu"]["destinations"]
        return list(dict.fromkeys(str(d["name"]) for d in destinations if isinstance(d, dict) and "name" in d))
    except (KeyError, TypeError):
        return []


def parse_config(raw: Any, source: str = "") -> AdapterConfig:
    """Validate an already-loaded YAML document (no line numbers); raise SettingsError."""
    return validate(SCHEMA, raw, None, source, {"destinations": _destination_names(raw)})


def load_config(path: Path | str) -> AdapterConfig:
    """Read and validate the configuration file at ``path``; raise SettingsError naming each line and key."""
    raw, node = read(path)
    return validate(SCHEMA, raw, node, str(path), {"destinations": _destination_names(raw)})


def config_problems(path: Path | str, problems: list[tuple[Loc, str]]) -> SettingsError:
    """A SettingsError for problems found after loading (e.g. workflow bindings), with their lines."""
    return located(problems, read(path)[1], str(path))
