"""Quantities and etcd versions, parsed as the API server and etcd read them."""

from __future__ import annotations

from decimal import Decimal

import pytest

from etcdop.api.quantity import is_positive_quantity, parse_quantity
from etcdop.api.semver import cel_string, is_full_version, is_supported_version, parse_version


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("10Gi", Decimal(10 * 2**30)),
        ("1Ki", Decimal(1024)),
        ("500M", Decimal(500_000_000)),
        ("1.5e9", Decimal(1_500_000_000)),
        ("100m", Decimal("0.1")),
        ("2", Decimal(2)),
        (".5", Decimal("0.5")),
        ("-1Gi", Decimal(-(2**30))),
    ],
)
def test_quantities(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "ten", "10 Gi", "10GB", "Gi", "1.2.3", "10gi"])
def test_not_quantities(text: str) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity(text)
    assert not is_positive_quantity(text)


def test_positive_means_above_zero() -> None:
    assert is_positive_quantity("1")
    assert not is_positive_quantity("0")
    assert not is_positive_quantity("0Gi")
    assert not is_positive_quantity("-5M")


def test_versions_order_like_releases() -> None:
    assert parse_version("3.6.0-rc.1") < parse_version("3.6.0") < parse_version("3.6.16")
    assert parse_version("3.5.35") < parse_version("3.6.0")
    assert parse_version("v3.6.16") == parse_version("3.6.16")
    assert str(parse_version("3.6.0-rc.1")) == "3.6.0-rc.1"
    with pytest.raises(ValueError, match="full etcd version"):
        parse_version("3.6")


def test_full_and_supported_versions() -> None:
    assert is_full_version("3.6.16") and not is_full_version("3.6.x")
    assert not is_full_version("v3.6.16")  # the API wants the bare version; the tag adds the v
    assert is_supported_version("3.5.0") and is_supported_version("3.12.1")
    assert not is_supported_version("3.4.30") and not is_supported_version("4.0.0")


def test_cel_strings_escape_backslashes_and_quotes() -> None:
    assert cel_string(r"^a\.b'$") == r"'^a\\.b\'$'"
