"""The informer's cache: the relist diff (deletes for what vanished) and watch-event folding."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etcdop.kube.client import key_of, split_key
from etcdop.kube.store import Change, Store, relist_diff


def cm(name: str, rv: str = "1", uid: str | None = None, ns: str | None = "default",
       **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": uid or f"uid-{name}", "resourceVersion": rv}
    if ns:
        meta["namespace"] = ns
    if labels:
        meta["labels"] = labels
    return {"metadata": meta}


def summary(changes: list[Change]) -> list[tuple[str, str]]:
    return [(c.type, c.key) for c in changes]


def test_keys_are_namespace_slash_name_or_just_the_name() -> None:
    assert key_of(cm("a")) == "default/a"
    assert key_of(cm("node-1", ns=None)) == "node-1"
    assert split_key("default/a") == ("default", "a")
    assert split_key("node-1") == (None, "node-1")


def test_relist_emits_deletes_for_objects_gone_while_away() -> None:
    known = {"default/a": cm("a"), "default/b": cm("b")}
    fresh = {"default/b": cm("b")}
    assert summary(relist_diff(known, fresh)) == [("deleted", "default/a")]


def test_relist_emits_adds_and_only_real_updates() -> None:
    known = {"default/a": cm("a", rv="5"), "default/b": cm("b", rv="7")}
    fresh = {"default/a": cm("a", rv="5"), "default/b": cm("b", rv="9"), "default/c": cm("c")}
    changes = relist_diff(known, fresh)
    assert summary(changes) == [("updated", "default/b"), ("added", "default/c")]
    assert changes[0].old is not None and changes[0].old["metadata"]["resourceVersion"] == "7"


def test_relist_treats_a_reused_name_as_delete_then_add() -> None:
    old = cm("a", uid="u1")
    new = cm("a", uid="u2", rv="9")
    changes = relist_diff({"default/a": old}, {"default/a": new})
    assert summary(changes) == [("deleted", "default/a"), ("added", "default/a")]
    assert changes[0].obj is old and changes[1].obj is new


objects = st.dictionaries(
    st.sampled_from([f"default/{n}" for n in "abcdef"]),
    st.tuples(st.sampled_from(["u1", "u2"]), st.sampled_from(["1", "2", "3"])),
)


@given(objects, objects)
def test_applying_the_relist_diff_reproduces_the_fresh_list(
    before: dict[str, tuple[str, str]], after: dict[str, tuple[str, str]]
) -> None:
    def build(spec: dict[str, tuple[str, str]]) -> dict[str, dict[str, Any]]:
        return {k: cm(k.split("/")[1], rv=rv, uid=uid) for k, (uid, rv) in spec.items()}

    known, fresh = build(before), build(after)
    state = dict(known)
    for change in relist_diff(known, fresh):
        if change.type == "deleted":
            assert state.pop(change.key) is change.obj
        else:
            assert (change.key in state) == (change.type == "updated")
            state[change.key] = change.obj
    assert state == fresh
    # nothing is said about an object that did not change
    unchanged = {k for k in known if k in fresh and known[k] == fresh[k]}
    assert not {c.key for c in relist_diff(known, fresh)} & unchanged


def test_store_replace_keeps_the_fresh_list_and_returns_the_diff() -> None:
    s = Store()
    added = s.replace([cm("a"), cm("b")])
    assert summary(added) == [("added", "default/a"), ("added", "default/b")]
    assert summary(s.replace([cm("b")])) == [("deleted", "default/a")]
    assert s.keys() == ["default/b"] and len(s) == 1


def test_store_folds_watch_events() -> None:
    s = Store()
    assert summary(s.apply("ADDED", cm("a"))) == [("added", "default/a")]
    changes = s.apply("MODIFIED", cm("a", rv="2"))
    assert summary(changes) == [("updated", "default/a")]
    assert changes[0].old == cm("a")
    # ADDED for a known object (a watch replayed after a relist) is an update
    assert summary(s.apply("ADDED", cm("a", rv="3"))) == [("updated", "default/a")]
    # MODIFIED for an unknown object is an add
    assert summary(s.apply("MODIFIED", cm("b"))) == [("added", "default/b")]
    assert summary(s.apply("ADDED", cm("a", uid="other", rv="4"))) == [
        ("deleted", "default/a"), ("added", "default/a")]
    assert summary(s.apply("DELETED", cm("a", uid="other", rv="5"))) == [("deleted", "default/a")]
    assert "default/a" not in s
    assert s.apply("DELETED", cm("zzz")) == [], "deleting the unknown changes nothing"
    assert s.get("default/b") == cm("b") and s.get_by("default", "b") == cm("b")


def test_store_rejects_unknown_event_types() -> None:
    with pytest.raises(ValueError, match="BOOKMARK"):
        Store().apply("BOOKMARK", cm("a"))


def test_store_lists_by_namespace_and_labels() -> None:
    s = Store()
    s.replace([
        cm("a", app="etcd", cluster="x"), cm("b", app="etcd", cluster="y"),
        cm("c", ns="other", app="etcd", cluster="x"), cm("n", ns=None),
    ])
    def names(objs: list[dict[str, Any]]) -> list[str]:
        return sorted(o["metadata"]["name"] for o in objs)

    assert names(s.list()) == ["a", "b", "c", "n"]
    assert names(s.list("default")) == ["a", "b"]
    assert names(s.list(labels={"cluster": "x"})) == ["a", "c"]
    assert names(s.list("default", {"app": "etcd", "cluster": "x"})) == ["a"]
    assert s.get_by(None, "n") is not None
