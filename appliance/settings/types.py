"""Value types the schemas share: numbers without silent conversions, and checked strings.

Numbers are strict: ``"5"`` and ``true`` are not numbers (YAML gives real ints and floats), while an
integer is accepted where a float is expected. Strings also accept numbers (``code: 10200004``).
Each checked string type says what it must be in its error message.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Strict
from pydantic_core import PydanticCustomError

#: Config of every schema dataclass: unknown keys are errors, numbers may be given for strings.
STRICT_KEYS = ConfigDict(extra="forbid", coerce_numbers_to_str=True)
#: ... and keys spelt in kebab-case (``max-associations`` for ``max_associations``).
KEBAB_KEYS = ConfigDict(extra="forbid", coerce_numbers_to_str=True, alias_generator=lambda name: name.replace("_", "-"))

Int = Annotated[int, Strict()]
Number = Annotated[float, Strict()]
Flag = Annotated[bool, Strict()]


def invalid(message: str) -> PydanticCustomError:
    """An error saying what the value must be; the value itself is appended to the message."""
    return PydanticCustomError("invalid", message)


def conflict(message: str, *at: str | int) -> PydanticCustomError:
    """An error between values (the message says it all); ``at`` extends its location, e.g. ``(2, "class")``."""
    return PydanticCustomError("conflict", message, {"at": at})


def unique(key: str, what: str) -> AfterValidator:
    """Put on a tuple of sections: no two may have the same ``key`` (e.g. ``ae-title``)."""

    def check(items: tuple[Any, ...]) -> tuple[Any, ...]:
        values = [getattr(item, key.replace("-", "_")) for item in items]
        for i, value in enumerate(values):
            if value in values[:i]:
                raise conflict(f"duplicate {what} {value!r}", i, key)
        return items

    return AfterValidator(check)


def _checked(kind: str, convert: Callable[[str], str | None]) -> AfterValidator:
    def check(value: str) -> str:
        converted = convert(value)
        if converted is None:
            raise invalid(f"must be {kind}")
        return converted

    return AfterValidator(check)


def _ae_title(value: str) -> str | None:
    # PS3.5 AE VR: 16 characters of the default repertoire, no backslash or control characters;
    # leading and trailing spaces are padding, not significant.
    value = value.strip()
    return value if 1 <= len(value) <= 16 and all(32 <= ord(c) < 127 and c != "\\" for c in value) else None


def _ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def _host_port(value: str) -> str | None:
    # tritonclient takes host:port without a scheme; a scheme is tolerated and stripped.
    hostport = value.strip().split("://", 1)[-1]
    return hostport if re.fullmatch(r"[A-Za-z0-9._\[\]:-]{1,253}:[0-9]{1,5}", hostport) else None


def _regex(value: str) -> str | None:
    try:
        re.compile(value)
    except re.error:
        return None
    return value


def _match(pattern: str) -> Callable[[str], str | None]:
    compiled = re.compile(pattern)
    return lambda value: value if compiled.fullmatch(value) else None


AeTitle = Annotated[str, _checked("1-16 characters without backslash or control characters", _ae_title)]
IpAddress = Annotated[str, _checked("an IP address", _ip)]
#: Destinations may be names, resolved when connecting; sources are compared with the peer's address.
Host = Annotated[str, _checked("a host name or IP address", _match(r"[A-Za-z0-9._:-]{1,253}"))]
HostPort = Annotated[str, _checked("host:port", _host_port)]
Name = Annotated[str, _checked("a name of 1-64 characters A-Z a-z 0-9 . _ - (not starting with . _ -)",
                               _match(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"))]
Uid = Annotated[str, _checked("a UID (digits and dots, at most 64 characters)",
                              _match(r"(?=.{1,64}$)[0-9]+(\.[0-9]+)*"))]
#: A libpq connection URL of a PostgreSQL database; a password in it is allowed (~/.pgpass is better).
DatabaseUrl = Annotated[str, _checked("a PostgreSQL URL: postgresql://USER@HOST:PORT/DATABASE",
                                      _match(r"postgres(ql)?://[^\s/]*/[A-Za-z0-9_.-]+(\?\S*)?"))]
Text = Annotated[str, _checked("a non-empty string", lambda v: v if v.strip() else None)]
Regex = Annotated[str, _checked("a valid regular expression", _regex)]


def _non_empty_path(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise invalid("must be a path")
    return value


FilePath = Annotated[Path, BeforeValidator(_non_empty_path)]


def _three(value: Any) -> Any:
    if value is None:  # an optional triple left unset
        return value
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise invalid("must be three values (x, y, z)")
    return value


#: Put on an (x, y, z) tuple type: a wrong count says "three values (x, y, z)", not "field required".
THREE = BeforeValidator(_three)
