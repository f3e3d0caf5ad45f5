"""spec.upgrade and etcd's version policy: the same words at admission (CEL) and in Python."""

from __future__ import annotations

import pytest

from etcdop.api.duration import parse_duration
from etcdop.api.etcdcluster import VERSION_TRANSITION_RULES, EtcdClusterSpec
from etcdop.api.schema import check_transition
from etcdop.api.semver import change_refusal


def spec(**fields: object) -> EtcdClusterSpec:
    return EtcdClusterSpec.from_dict({"version": "3.5.35", **fields})


def test_surge_is_the_default_strategy_with_a_five_minute_gate() -> None:
    s = spec()
    assert (s.upgrade.strategy, parse_duration(s.upgrade.member_ready_timeout)) == ("Surge", 300)


def test_in_place_is_refused_with_empty_dir_and_says_why() -> None:
    errors = spec(upgrade={"strategy": "InPlace"}).validate()
    assert [e.path for e in errors] == ["spec"]
    assert "InPlace needs spec.storage.persistentVolumeClaim" in errors[0].message
    claims = {"persistentVolumeClaim": {"size": "1Gi"}}
    assert spec(upgrade={"strategy": "InPlace"}, storage=claims).validate() == []


def test_a_bad_ready_timeout_names_the_field() -> None:
    errors = spec(upgrade={"memberReadyTimeout": "soon"}).validate()
    assert [str(e) for e in errors] == [
        "spec.upgrade.memberReadyTimeout: must be a duration such as 90s, 5m or 1h30m, got 'soon'"
    ]
    assert parse_duration("1m30s") == 90


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ("3.5.35", "3.7.0", "cannot skip a minor version"),
        ("3.7.1", "3.5.35", "more than one minor version"),
        ("3.5.20", "3.6.16", "3.5.32 or later"),
    ],
)
def test_each_version_change_etcd_refuses_is_refused_at_admission(
    old: str, new: str, words: str
) -> None:
    message = check_transition(VERSION_TRANSITION_RULES, old, new)
    assert message is not None and words in message


@pytest.mark.parametrize(
    ("old", "new"),
    [("3.5.32", "3.6.16"), ("3.6.16", "3.5.35"), ("3.5.20", "3.5.35"), ("3.6.0", "3.6.16")],
)
def test_supported_changes_pass(old: str, new: str) -> None:
    assert check_transition(VERSION_TRANSITION_RULES, old, new) is None
    assert change_refusal(old, new) is None


def test_the_policy_on_running_versions_says_what_to_do() -> None:
    skip = change_refusal("3.5.35", "3.7.0")
    assert skip is not None and "upgrade to a 3.6.x release first" in skip
    old = change_refusal("3.5.20", "3.6.16")
    assert old is not None and "set spec.version to 3.5.32" in old
    down = change_refusal("3.7.0", "3.5.35")
    assert down is not None and "downgrade to a 3.6.x release first" in down
