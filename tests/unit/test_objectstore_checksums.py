"""Bodies go without a payload signature; over plain http the server must confirm each checksum
(a server that ignores them would otherwise take altered bytes unchecked)."""

from __future__ import annotations

import pytest

from etcdop.objectstore import ChecksumNotChecked, Credentials, ObjectStore, StoreConfig

SENT = "Cey268i878cz9vLsRPeRq+7WqZ7fDMMVGWN4mK69Utg="


def store(endpoint: str) -> ObjectStore:
    return ObjectStore(StoreConfig("b", Credentials("a", "s"), endpoint=endpoint))


def test_over_plain_http_a_body_whose_checksum_is_not_echoed_is_refused() -> None:
    s = store("http://127.0.0.1:9000")
    s.confirm("put", "k", SENT, {"ChecksumSHA256": SENT})  # confirmed: fine
    for resp in ({}, {"ChecksumSHA256": "other"}):
        with pytest.raises(ChecksumNotChecked, match=r"use https, or a server that checks"):
            s.confirm("put", "k", SENT, resp)


@pytest.mark.parametrize("endpoint", ["https://s3.example.test", ""])
def test_over_https_tls_guards_the_body_and_no_echo_is_needed(endpoint: str) -> None:
    s = store(endpoint)
    assert not s.checksums_required
    s.confirm("put", "k", SENT, {})
