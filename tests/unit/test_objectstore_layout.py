"""Key layout and multipart arithmetic: pure functions."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etcdop.objectstore import MIB, BackupKey, cluster_dir, part_size_for, peak_buffer_bytes
from etcdop.objectstore.parts import MAX_PARTS, composite_sha256

T = dt.datetime(2026, 11, 27, 3, 15, 0, tzinfo=dt.UTC)


def test_layout() -> None:
    key = BackupKey("backups/prod", "default", "demo", T, 42)
    assert key.dir == "backups/prod/default/demo/20261127T031500.000Z-0000000000000000042/"
    assert key.snapshot() == key.dir + "snapshot.db"
    assert key.snapshot("zstd") == key.dir + "snapshot.db.zst"
    assert key.metadata == key.dir + "metadata.json"
    assert cluster_dir("", "ns", "c") == "ns/c/"
    assert cluster_dir("/p/", "ns", "c") == "p/ns/c/"


def test_timestamps_are_utc_whatever_zone_they_come_in() -> None:
    east = dt.timezone(dt.timedelta(hours=2))
    assert BackupKey("", "ns", "c", T.astimezone(east), 1).dir == BackupKey("", "ns", "c", T, 1).dir


@given(
    st.lists(
        st.tuples(
            st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2999, 1, 1)),
            st.integers(0, 2**63 - 1),
        ),
        min_size=2, max_size=20,
    )
)
def test_key_order_is_time_order_then_revision(taken: list[tuple[dt.datetime, int]]) -> None:
    keys = [BackupKey("p", "ns", "c", t.replace(tzinfo=dt.UTC), r) for t, r in taken]
    by_key = sorted(keys, key=lambda k: k.dir)
    by_time = sorted(keys, key=lambda k: k.order)
    assert [(k.taken_at, k.revision) for k in by_key] == [(k.taken_at, k.revision) for k in by_time]


def test_two_backups_in_the_same_second_at_the_same_revision_get_two_keys() -> None:
    """Two EtcdBackups sent to two members at once, with no write between them, were named
    alike to the second; the second was refused as an existing object."""
    first = BackupKey("p", "ns", "c", T.replace(microsecond=120_000), 7)
    second = BackupKey("p", "ns", "c", T.replace(microsecond=121_999), 7)
    assert first.dir == "p/ns/c/20261127T031500.120Z-0000000000000000007/"
    assert first.dir != second.dir and first.dir < second.dir


def test_keys_named_to_the_second_still_parse_and_keep_their_name() -> None:
    older = "p/ns/c/20261127T031500Z-0000000000000000007/metadata.json"
    key = BackupKey.parse("p", "ns", "c", older)
    assert key.metadata == older and key.taken_at == T and key.revision == 7


def test_a_key_named_to_the_second_orders_by_its_time_not_its_name() -> None:
    """Was: lists were sorted by name, and '.' sorts before 'Z', so a millisecond key taken
    later in the same second came before the older whole-second key."""
    older = BackupKey.parse("p", "ns", "c", "p/ns/c/20261127T031500Z-0000000000000000007/")
    newer = BackupKey("p", "ns", "c", T.replace(microsecond=250_000), 7)
    assert newer.dir < older.dir  # by name: the wrong way round
    assert sorted([newer, older], key=lambda k: k.order) == [older, newer]


def test_parse_gives_back_the_key() -> None:
    key = BackupKey("p", "ns", "c", T.replace(microsecond=987_654), 7)
    assert BackupKey.parse("p", "ns", "c", key.metadata) == key
    with pytest.raises(ValueError, match="not under"):
        BackupKey.parse("p", "ns", "other", key.metadata)
    with pytest.raises(ValueError, match="timestamp"):
        BackupKey.parse("p", "ns", "c", "p/ns/c/garbage/metadata.json")


@pytest.mark.parametrize("bad", [{"namespace": "Bad_NS"}, {"cluster": "../x"}, {"revision": -1},
                                 {"prefix": "a/../b"}])
def test_invalid_parts_are_refused_by_name(bad: dict[str, object]) -> None:
    good = BackupKey(prefix="p", namespace="ns", cluster="c", taken_at=T, revision=1)
    with pytest.raises(ValueError, match=next(iter(bad))):
        dataclasses.replace(good, **bad)


def test_part_size_keeps_the_preferred_size_for_usual_databases() -> None:
    assert part_size_for(512 * MIB) == 8 * MIB
    assert part_size_for(0) == 8 * MIB
    assert part_size_for(8 * 1024 * MIB, preferred=5 * MIB) == 5 * MIB


@given(st.integers(0, 2 * 1024**4))
def test_part_size_always_fits_s3_limits(size: int) -> None:
    part = part_size_for(size)
    assert 5 * MIB <= part <= 5 * 1024 * MIB
    assert part % MIB == 0
    assert size * 1.5 <= part * MAX_PARTS  # room to grow by half while streaming


def test_part_size_refuses_what_cannot_fit() -> None:
    with pytest.raises(ValueError, match="outside S3's limits"):
        part_size_for(1, preferred=MIB)
    with pytest.raises(ValueError, match="does not fit"):
        part_size_for(100 * 1024**4)


def test_peak_buffer_does_not_depend_on_the_database() -> None:
    assert peak_buffer_bytes(8 * MIB, 2) == 32 * MIB


def test_composite_checksum_is_what_s3_computes() -> None:
    parts = [b"a" * 10, b"b" * 3]
    digests = [hashlib.sha256(p).digest() for p in parts]
    expected = base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode() + "-2"
    assert composite_sha256(digests) == expected
