"""Status through the status subresource, finalizers, and ownerReferences.

Status is a merge patch on ``/status`` carrying observedGeneration, so a reader can tell whether
the status describes the spec it sees. Finalizer edits carry the resourceVersion they were
computed from (a 409 means: re-read and try again), because a merge patch replaces the whole
list and would otherwise drop a finalizer someone else added meanwhile. ownerReferences are
merged by uid, never replaced (kr8s' ``set_owner`` replaces the whole list).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from etcdop.kube.client import KubeClient, Obj, Resource


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping) or "name" not in meta:
        raise ValueError("object has no metadata.name: pass an object read from the API server")
    return meta


async def patch_status(
    client: KubeClient,
    res: Resource,
    obj: Mapping[str, Any],
    status: Obj,
    *,
    conditional: bool = False,
) -> Obj:
    """Merge STATUS into OBJ's status with observedGeneration = OBJ's metadata.generation.

    A key set to None is removed. CONDITIONAL makes the write fail with ConflictError if OBJ
    changed since it was read (use it when the status is computed from that very version)."""
    meta = _meta(obj)
    body: Obj = {"status": dict(status)}
    if meta.get("generation") is not None:
        body["status"]["observedGeneration"] = meta["generation"]
    if conditional:
        body["metadata"] = {"resourceVersion": meta["resourceVersion"]}
    return await client.patch(res, meta["name"], body, meta.get("namespace"), subresource="status")


def has_finalizer(obj: Mapping[str, Any], finalizer: str) -> bool:
    return finalizer in (_meta(obj).get("finalizers") or [])


async def add_finalizer(
    client: KubeClient, res: Resource, obj: Mapping[str, Any], finalizer: str
) -> Obj:
    """OBJ with FINALIZER added (no request when it is there already)."""
    meta = _meta(obj)
    current = list(meta.get("finalizers") or [])
    if finalizer in current:
        return dict(obj)
    return await _put_finalizers(client, res, meta, [*current, finalizer])


async def remove_finalizer(
    client: KubeClient, res: Resource, obj: Mapping[str, Any], finalizer: str
) -> Obj:
    """OBJ with FINALIZER removed (no request when it is absent). Once the last finalizer of an
    object being deleted goes, the object is gone: the result is then its final state."""
    meta = _meta(obj)
    current = list(meta.get("finalizers") or [])
    if finalizer not in current:
        return dict(obj)
    return await _put_finalizers(client, res, meta, [f for f in current if f != finalizer])


async def _put_finalizers(
    client: KubeClient, res: Resource, meta: Mapping[str, Any], finalizers: list[str]
) -> Obj:
    body = {
        "metadata": {"finalizers": finalizers or None, "resourceVersion": meta["resourceVersion"]}
    }
    return await client.patch(res, meta["name"], body, meta.get("namespace"))


def owner_reference(
    owner: Mapping[str, Any], *, controller: bool = True, block_owner_deletion: bool = True
) -> Obj:
    """A reference to OWNER (which must carry apiVersion, kind and uid) for ownerReferences."""
    meta = _meta(owner)
    if not owner.get("apiVersion") or not owner.get("kind") or not meta.get("uid"):
        raise ValueError(
            f"owner {meta.get('namespace')}/{meta['name']}: an ownerReference needs the owner's "
            "apiVersion, kind and metadata.uid; pass the object as read from the API server"
        )
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": controller,
        "blockOwnerDeletion": block_owner_deletion,
    }


def with_owner(obj: Mapping[str, Any], ref: Obj) -> Obj:
    """A copy of OBJ (a manifest) whose ownerReferences include REF, keeping the others.

    A reference with the same uid is replaced; at most one reference may be the controller."""
    out: Obj = copy.deepcopy(dict(obj))
    meta = out.setdefault("metadata", {})
    refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != ref["uid"]]
    if ref.get("controller"):
        other = next((r for r in refs if r.get("controller")), None)
        if other is not None:
            raise ValueError(
                f"{meta.get('namespace')}/{meta.get('name')} is already controlled by "
                f"{other.get('kind')} {other.get('name')} (uid {other.get('uid')}): an object "
                "has at most one controller"
            )
    meta["ownerReferences"] = [*refs, ref]
    return out


def controller_of(obj: Mapping[str, Any]) -> Obj | None:
    """The ownerReference marked controller, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def is_owned_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    uid = (owner.get("metadata") or {}).get("uid")
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return uid is not None and any(r.get("uid") == uid for r in refs)
