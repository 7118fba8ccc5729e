"""The transfer syntaxes the reader decodes: the one list the SCP negotiates and the pipeline checks.

The adapter stores instances as received and never decodes them, so accepting a syntax whose pixel
data the reader cannot decode would acknowledge a study that then fails in the pipeline, while the
sender believes it was delivered. The SCP therefore accepts exactly :func:`storage_syntaxes` for
every storage SOP class and rejects any other proposal at association (A-ASSOCIATE-AC result
*transfer-syntaxes-not-supported*), so the sender knows at once.

Decoders (pydicom's pixel-data plugins): uncompressed, deflated and RLE by pydicom itself; the JPEG
family (baseline, extended, lossless, JPEG-LS) by pylibjpeg-libjpeg; JPEG 2000 and HTJ2K by
pylibjpeg-openjpeg. Pillow and pyjpegls (pulled in by highdicom) are fallbacks pydicom may also use.
"""

from __future__ import annotations

import logging

from pydicom import uid
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import UID

LOG = logging.getLogger(__name__)

#: Every transfer syntax the reader decodes, uncompressed first (what a plain sender proposes).
READER_SYNTAXES: tuple[UID, ...] = (
    uid.ExplicitVRLittleEndian,
    uid.ImplicitVRLittleEndian,
    uid.DeflatedExplicitVRLittleEndian,
    uid.ExplicitVRBigEndian,
    uid.JPEGBaseline8Bit,
    uid.JPEGExtended12Bit,
    uid.JPEGLossless,  # process 14, any selection value
    uid.JPEGLosslessSV1,  # process 14, selection value 1: the common lossless archive syntax
    uid.JPEGLSLossless,
    uid.JPEGLSNearLossless,
    uid.JPEG2000Lossless,
    uid.JPEG2000,
    uid.HTJ2KLossless,
    uid.HTJ2KLosslessRPCL,
    uid.HTJ2K,
    uid.RLELossless,
)


def has_decoder(syntax: str) -> bool:
    """Whether pydicom, as installed here, can decode pixel data in ``syntax``."""
    try:
        return bool(get_decoder(UID(syntax)).is_available)
    except NotImplementedError:  # no decoder exists for this syntax at all (e.g. MPEG, JPIP)
        return False


def missing_decoders(syntaxes: tuple[UID, ...] = READER_SYNTAXES) -> list[UID]:
    """The syntaxes in ``syntaxes`` whose decoder plugin is not installed (an incomplete install)."""
    return [s for s in syntaxes if not has_decoder(s)]


def storage_syntaxes() -> list[UID]:
    """What the SCP accepts for storage: :data:`READER_SYNTAXES` less any whose decoder is missing.

    A missing decoder is logged as a warning naming the syntax and left out, so the host never
    acknowledges what its own pipeline cannot read.
    """
    missing = missing_decoders()
    for syntax in missing:
        LOG.warning("no pixel-data decoder for %s (%s) is installed: the SCP rejects it", syntax.name, syntax)
    return [s for s in READER_SYNTAXES if s not in missing]


def decodable(syntax: str) -> bool:
    """Whether the reader decodes ``syntax``: in :data:`READER_SYNTAXES` and its decoder installed."""
    return UID(syntax) in READER_SYNTAXES and has_decoder(syntax)
