"""Storage is negotiated in exactly the transfer syntaxes the reader decodes; every other one is
rejected at association (A-ASSOCIATE-AC result 4, transfer-syntaxes-not-supported), so a sender
never has a study acknowledged that the pipeline cannot read."""

from __future__ import annotations

from adapterkit import Adapter
from pydicom import uid
from pydicom.uid import UID
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, EnhancedCTImageStorage  # type: ignore[attr-defined]

from appliance.dicomnet.syntaxes import READER_SYNTAXES, missing_decoders

#: Syntaxes nobody has a decoder for here, plus ones no standard defines (a private one, a typo).
UNKNOWN = (UID("1.2.840.113619.5.2"), UID("1.2.840.10008.1.2.4.999"))
#: Acceptor's result for a context whose transfer syntaxes it supports none of (PS3.8 9.3.3.2).
TRANSFER_SYNTAXES_NOT_SUPPORTED = 0x04


def test_every_listed_syntax_has_its_decoder_installed() -> None:
    assert missing_decoders() == []


def _negotiate(port: int, abstract: str, syntaxes: list[UID]) -> dict[str, int]:
    """Propose ``abstract`` once per syntax; the result per syntax (0 accepted)."""
    ae = AE(ae_title="STORESCU")
    for syntax in syntaxes:
        ae.add_requested_context(abstract, syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title="OrganSeg")
    assert assoc.is_established
    try:
        return {str(cx.transfer_syntax[0]): int(cx.result) for cx in assoc.accepted_contexts + assoc.rejected_contexts}
    finally:
        assoc.release()


def test_only_decodable_syntaxes_are_accepted(adapter: Adapter) -> None:
    others = [s for s in uid.AllTransferSyntaxes if s not in READER_SYNTAXES] + list(UNKNOWN)
    assert len(others) > 20
    for abstract in (CTImageStorage, EnhancedCTImageStorage):
        results = _negotiate(adapter.port, abstract, list(READER_SYNTAXES) + others)
        accepted = sorted(s for s, r in results.items() if r == 0)
        assert accepted == sorted(READER_SYNTAXES)
        rejected = {s: r for s, r in results.items() if s in others}
        assert rejected == {s: TRANSFER_SYNTAXES_NOT_SUPPORTED for s in others}, rejected
