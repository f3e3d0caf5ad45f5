"""The EtcdCluster kind (etcdop.io/v1alpha1) as typed Python.

The docstrings and `prop` descriptions below become the CRD's OpenAPI descriptions, so they are
written for the person running `kubectl explain etcdcluster.spec`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from etcdop.api.backupstorage import ClusterBackup, RestoreSource, source_errors
from etcdop.api.duration import DURATION_PATTERN, is_duration
from etcdop.api.quantity import is_positive_quantity
from etcdop.api.schema import (
    FieldError,
    HasRules,
    JSONObject,
    Rule,
    StoredStatus,
    api_type,
    decode,
    prop,
    validate,
)
from etcdop.api.semver import (
    MIN_PATCH_BEFORE_NEXT_MINOR,
    SUPPORTED_PATTERN,
    VERSION_PATTERN,
    cel_string,
    change_refusal,
    is_full_version,
    is_supported_version,
    parse_version,
)

GROUP = "etcdop.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "EtcdCluster"
PLURAL = "etcdclusters"
SINGULAR = "etcdcluster"
SHORT_NAMES = ("etcd",)
CRD_NAME = f"{PLURAL}.{GROUP}"

DEFAULT_IMAGE = "gcr.io/etcd-development/etcd"
DEFAULT_SIZE = 3
MIN_SIZE = 1
MAX_SIZE = 9
NAME_MAX = 57
"""Members are named `<cluster>-<5 characters>` and that name is the pod's host name, which
Kubernetes limits to 63 characters."""
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
"""A DNS-1035 label: the name also names Services (`<cluster>-client`), which must start with a
letter."""
NAME_MESSAGE = (
    f"must start with a lowercase letter, contain only lowercase letters, digits "
    f"and '-', end with a letter or digit, and be at most {NAME_MAX} characters (member pods are "
    "named <cluster>-<5 characters>, and a host name has at most 63)"
)

# ---------------------------------------------------------------- rules shared with CEL

SIZE_RULE = Rule(
    cel=f"self >= {MIN_SIZE} && self <= {MAX_SIZE}",
    message=f"must be between {MIN_SIZE} and {MAX_SIZE}",
    check=lambda v: MIN_SIZE <= v <= MAX_SIZE,
)
VERSION_FORMAT_RULE = Rule(
    cel=f"self.matches({cel_string(VERSION_PATTERN)})",
    message="must be a full etcd release version such as 3.6.16 (no 'v' prefix, no wildcard)",
    check=is_full_version,
)
VERSION_SUPPORTED_RULE = Rule(
    cel=(
        f"!self.matches({cel_string(VERSION_PATTERN)}) "
        f"|| self.matches({cel_string(SUPPORTED_PATTERN)})"
    ),
    message="etcd 3.5 or a newer 3.x release is required",
    check=lambda v: not is_full_version(v) or is_supported_version(v),
)
_V = cel_string(VERSION_PATTERN)
_BOTH_VERSIONS = f"!self.matches({_V}) || !oldSelf.matches({_V})"


def _minor_step_ok(old: str, new: str, up: bool) -> bool:
    try:
        a, b = parse_version(old), parse_version(new)
    except ValueError:
        return True
    return b.minor <= a.minor + 1 if up else b.minor >= a.minor - 1


VERSION_NO_SKIP_RULE = Rule(
    cel=(f"{_BOTH_VERSIONS} || int(self.split('.')[1]) <= int(oldSelf.split('.')[1]) + 1"),
    message=(
        "cannot skip a minor version: etcd upgrades one minor version at a time (e.g. 3.5 to "
        "3.6); set the next minor release first"
    ),
    check=lambda change: _minor_step_ok(change[0], change[1], up=True),
    show_value=False,
    transition=True,
)
VERSION_ONE_MINOR_DOWN_RULE = Rule(
    cel=(f"{_BOTH_VERSIONS} || int(self.split('.')[1]) >= int(oldSelf.split('.')[1]) - 1"),
    message=(
        "cannot downgrade by more than one minor version: etcd downgrades one minor version "
        "at a time; set the previous minor release first"
    ),
    check=lambda change: _minor_step_ok(change[0], change[1], up=False),
    show_value=False,
    transition=True,
)
_MIN = MIN_PATCH_BEFORE_NEXT_MINOR[(3, 5)]
VERSION_MIN_PATCH_RULE = Rule(
    cel=(
        f"{_BOTH_VERSIONS} || !oldSelf.startsWith('3.5.') || !self.startsWith('3.6.') "
        f"|| int(oldSelf.split('.')[2].split('-')[0]) >= {_MIN}"
    ),
    message=(
        f"etcd requires 3.5.{_MIN} or later on every member before an upgrade to 3.6 (etcd's "
        f"upgrade guide); set spec.version to 3.5.{_MIN} or a later 3.5.x first"
    ),
    check=lambda change: (
        not (change[0].startswith("3.5.") and change[1].startswith("3.6."))
        or change_refusal(change[0], change[1]) is None
    ),
    show_value=False,
    transition=True,
)
VERSION_TRANSITION_RULES = (
    VERSION_NO_SKIP_RULE,
    VERSION_ONE_MINOR_DOWN_RULE,
    VERSION_MIN_PATCH_RULE,
)
"""etcd's version policy as admission rules on a change of spec.version; the planner checks the
same policy against the versions the members actually run (a condition, not admission)."""
DURATION_RULE = Rule(
    cel=f"self.matches({cel_string(DURATION_PATTERN)})",
    message="must be a duration such as 90s, 5m or 1h30m",
    check=is_duration,
)
QUANTITY_RULE = Rule(
    cel="isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))",
    message="must be a positive Kubernetes quantity such as 10Gi",
    check=is_positive_quantity,
)
_TAG_AT_END = re.compile(r":[^/]*$")
IMAGE_RULE = Rule(
    cel="size(self) > 0 && !self.contains('@') && !self.matches(':[^/]*$')",
    message=(
        "must be an image repository without tag or digest, such as "
        f"{DEFAULT_IMAGE} (the tag is always v<spec.version>)"
    ),
    check=lambda v: bool(v) and "@" not in v and _TAG_AT_END.search(v) is None,
)

# ---------------------------------------------------------------- spec


@api_type
class EmptyDirStorage:
    """Member data in an emptyDir volume: it lives and dies with the pod, so a member whose pod is
    deleted is removed from the cluster and replaced by a new member that copies the data from the
    others."""

    medium: str = prop(
        'Storage medium: "" (the node\'s disk) or "Memory" (tmpfs; counts against memory limits).',
        default="",
        enum=("", "Memory"),
    )
    size_limit: str | None = prop(
        "Maximum size of the volume, a quantity such as 8Gi; the pod is evicted when it is "
        "exceeded.",
        default=None,
        max_length=64,
        rules=(QUANTITY_RULE,),
    )


@api_type
class PersistentVolumeClaimStorage:
    """Member data in a PersistentVolumeClaim per member: a deleted pod is re-created on the same
    claim and rejoins with its data."""

    size: str = prop(
        "Requested size of each member's claim, a quantity such as 10Gi.",
        max_length=64,
        rules=(QUANTITY_RULE,),
    )
    storage_class_name: str | None = prop(
        "StorageClass of the claims; the cluster's default class when unset.",
        default=None,
        max_length=253,
    )
    when_deleted: str = prop(
        "What happens to the claims when the EtcdCluster is deleted: Retain (the default) keeps "
        "them, and the data, until you delete them; Delete removes them with the cluster. A new "
        "EtcdCluster of the same name never adopts claims an earlier one left behind.",
        default="Retain",
        schema_default="Retain",
        enum=("Retain", "Delete"),
    )


@api_type
class Storage(HasRules):
    """Where members keep their data. Set at most one of emptyDir and persistentVolumeClaim;
    emptyDir is used when neither is set."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!(has(self.emptyDir) && has(self.persistentVolumeClaim))",
            message="set at most one of emptyDir and persistentVolumeClaim",
            check=lambda s: s.empty_dir is None or s.persistent_volume_claim is None,
            show_value=False,
        ),
    )

    empty_dir: EmptyDirStorage | None = prop(
        "Keep member data in an emptyDir volume (the default).", default=None
    )
    persistent_volume_claim: PersistentVolumeClaimStorage | None = prop(
        "Keep member data in one PersistentVolumeClaim per member.", default=None
    )

    @property
    def uses_claims(self) -> bool:
        return self.persistent_volume_claim is not None


@api_type
class AutoCompaction:
    """etcd's automatic compaction of old revisions: without it the database grows with every
    write until it hits the backend quota and etcd refuses writes (the NOSPACE alarm)."""

    mode: str = prop(
        "periodic (keep the history of the last `retention` duration) or revision (keep the "
        "last `retention` revisions).",
        default="periodic",
        schema_default="periodic",
        enum=("periodic", "revision"),
    )
    retention: str = prop(
        "A duration such as 1h or 30m for periodic mode, a count such as 10000 for revision.",
        default="1h",
        schema_default="1h",
        max_length=32,
    )


@api_type
class PodTemplate:
    """Overrides for the member pods. By default members prefer distinct nodes (pod
    anti-affinity); setting affinity replaces that default."""

    node_selector: Mapping[str, str] = prop(
        "Node labels a member pod's node must have.", default_factory=dict
    )
    tolerations: tuple[JSONObject, ...] = prop(
        "Tolerations of the member pods, as in a Pod spec.", default=()
    )
    affinity: JSONObject | None = prop(
        "Affinity of the member pods, as in a Pod spec; replaces the default anti-affinity.",
        default=None,
    )
    labels: Mapping[str, str] = prop(
        "Extra labels on the member pods (the operator's own labels win).", default_factory=dict
    )
    annotations: Mapping[str, str] = prop(
        "Extra annotations on the member pods.", default_factory=dict
    )
    priority_class_name: str | None = prop(
        "PriorityClass of the member pods.", default=None, max_length=253
    )


@api_type
class UpgradePolicy:
    """How members are replaced when their pod changes (a new version, image, resources or pod
    template): one member at a time, the leader last, each one healthy before the next."""

    strategy: str = prop(
        "Surge (the default): add a member of the new pod as a learner, promote it once caught "
        "up, then remove an old one, so capacity and quorum never shrink; the data is copied to "
        "the new member. InPlace (persistentVolumeClaim storage only): re-create one member's "
        "pod at a time on its claim, keeping its data and member ID; cheaper for a large "
        "database, one member fewer while it restarts.",
        default="Surge",
        schema_default="Surge",
        enum=("Surge", "InPlace"),
    )
    member_ready_timeout: str = prop(
        "How long a new or re-created member may take to be healthy and caught up before the "
        "rollout stops (Degraded, reason UpgradeStalled); a Surge member that never became a "
        "voter is removed again. A duration such as 5m.",
        default="5m",
        schema_default="5m",
        max_length=32,
        rules=(DURATION_RULE,),
    )
    backup_before_upgrade: bool = prop(
        "With spec.backup set, a change of spec.version first takes an EtcdBackup named "
        "<cluster>-before-<version> and waits for it to succeed; a failed backup holds the "
        "upgrade (Degraded, reason UpgradeBackupFailed). false skips it.",
        default=True,
        schema_default=True,
    )


@api_type
class Recovery:
    """What the operator does when a majority of voting members is gone for good."""

    quorum_loss_timeout: str = prop(
        "How long a quorum may be missing (members gone, data lost, crash-looping) before the "
        "QuorumLost condition is set, such as 5m.",
        default="5m",
        schema_default="5m",
        max_length=32,
        rules=(DURATION_RULE,),
    )
    auto_restore: bool = prop(
        "Once QuorumLost is set, restore the cluster in place from its newest verified "
        "EtcdBackup (an EtcdRestore the operator creates). Off: nothing destructive is done; "
        "the condition says what to do.",
        default=False,
        schema_default=False,
    )


@api_type
class EtcdClusterSpec(HasRules):
    """The etcd cluster you want: how many members, which etcd version, where data lives."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=(
                "!has(self.upgrade) || !has(self.upgrade.strategy) "
                "|| self.upgrade.strategy != 'InPlace' "
                "|| (has(self.storage) && has(self.storage.persistentVolumeClaim))"
            ),
            message=(
                "spec.upgrade.strategy InPlace needs spec.storage.persistentVolumeClaim: with "
                "emptyDir a re-created pod starts with no data; use Surge"
            ),
            check=lambda s: s.upgrade.strategy != "InPlace" or s.storage.uses_claims,
            show_value=False,
        ),
    )

    size: int = prop(
        f"Number of voting members, {MIN_SIZE} to {MAX_SIZE}. Odd sizes are recommended: an even "
        "size tolerates no more failures than the odd size below it. Members are added and "
        "removed one at a time without losing quorum.",
        default=DEFAULT_SIZE,
        schema_default=DEFAULT_SIZE,
        rules=(SIZE_RULE,),
    )
    version: str = prop(
        "etcd version, a full release such as 3.6.16 (3.5 or newer). Changing it replaces the "
        "members one at a time (by spec.upgrade.strategy, the leader last).",
        max_length=64,
        rules=(VERSION_FORMAT_RULE, VERSION_SUPPORTED_RULE, *VERSION_TRANSITION_RULES),
    )
    image: str | None = prop(
        f"Image repository of etcd, without tag; the tag is always v<version>. Default "
        f"{DEFAULT_IMAGE}.",
        default=None,
        max_length=512,
        rules=(IMAGE_RULE,),
    )
    storage: Storage = prop(
        "Where members keep their data; emptyDir unless persistentVolumeClaim is set.",
        default_factory=Storage,
    )
    resources: JSONObject | None = prop(
        "Compute resources (requests, limits) of the etcd container, as in a Pod spec.",
        default=None,
    )
    pod_template: PodTemplate = prop("Overrides for the member pods.", default_factory=PodTemplate)
    backend_quota: str = prop(
        "Size the database may reach before etcd refuses writes (raises the NOSPACE alarm), a "
        "quantity such as 2Gi (etcd's --quota-backend-bytes; etcd advises at most 8Gi). On the "
        "alarm the operator compacts, defragments each member (the leader last) and disarms it.",
        default="2Gi",
        schema_default="2Gi",
        max_length=64,
        rules=(QUANTITY_RULE,),
    )
    auto_compaction: AutoCompaction = prop(
        "Automatic compaction of old revisions (periodic, 1h by default).",
        default_factory=AutoCompaction,
    )
    upgrade: UpgradePolicy = prop(
        "How members are replaced when the version or the member pod changes.",
        default_factory=UpgradePolicy,
        schema_default={},
    )
    paused: bool = prop(
        "Stop reconciling members while true (status is still reported): an upgrade holds "
        "between two steps and resumes when set back to false.",
        default=False,
        schema_default=False,
    )
    backup: ClusterBackup | None = prop(
        "Backups of this cluster: the storage the member pods' backup agents can write to and, "
        "with a schedule, scheduled EtcdBackups with retention and a restore drill.",
        default=None,
    )
    recovery: Recovery = prop(
        "Recovery from quorum loss: when to say so, and whether to restore by itself.",
        default_factory=Recovery,
    )
    bootstrap: RestoreSource | None = prop(
        "Start a new cluster from a backup (a clone) instead of empty: its first member "
        "restores the snapshot before etcd starts. Read only while the cluster is created; the "
        "cluster the backup came from is not touched.",
        default=None,
    )

    @classmethod
    def from_dict(cls, data: object) -> EtcdClusterSpec:
        """Read `.spec` as stored, with defaults; InvalidObject names each field of wrong type."""
        return decode(cls, data, KIND, "spec")

    @property
    def image_ref(self) -> str:
        """The image the members run: `<image>:v<version>`."""
        return f"{self.image or DEFAULT_IMAGE}:v{self.version}"

    def validate(self) -> list[FieldError]:
        """Every field whose value the API server would reject, by path (e.g. `spec.size`)."""
        errors = validate(self, "spec")
        if self.bootstrap is not None:
            errors += source_errors(self.bootstrap, "spec.bootstrap")
        return errors


# ---------------------------------------------------------------- status


@api_type
class MemberStatus:
    """One member of the etcd cluster as last observed."""

    name: str = prop("Member name (also its pod's name).")
    id: str = prop("etcd member ID in hexadecimal; empty before the member is added.", default="")
    version: str = prop("etcd version the member runs; empty when unknown.", default="")
    ready: bool = prop("The member's pod is Ready and etcd answers healthy.", default=False)
    is_leader: bool = prop("The member is the raft leader.", default=False)
    is_learner: bool = prop(
        "The member is a learner: it receives data but does not vote yet.", default=False
    )


@api_type
class Condition:
    """A condition in the standard Kubernetes shape."""

    type: str = prop("Condition type: Available, Progressing, Degraded, EvenSize.")
    status: str = prop('"True", "False" or "Unknown".', enum=("True", "False", "Unknown"))
    reason: str = prop("One CamelCase word for machines and alerts.", default="")
    message: str = prop("What happened and, when needed, what to do.", default="")
    last_transition_time: str | None = prop(
        "When status last changed.", default=None, string_format="date-time"
    )
    observed_generation: int = prop(
        "metadata.generation the condition was computed for.", default=0, int_format="int64"
    )


@api_type
class RestoreStatus:
    """The last in-place restore (EtcdRestore) of this cluster, as the cluster's reconciler
    carried it out: recorded before the seed member is created, so a restarted operator resumes
    it rather than starting another."""

    uid: str = prop("uid of the EtcdRestore.")
    name: str = prop("Name of the EtcdRestore.", default="")
    phase: str = prop(
        "Restoring (old members going, the seed restoring) or Restored (the seed serves).",
        default="",
        enum=("Restoring", "Restored"),
    )
    snapshot_key: str = prop("The snapshot restored.", default="")
    revision: int = prop("etcd revision of the restored data.", default=0, int_format="int64")
    seed: str = prop("The member started from the snapshot.", default="")
    completion_time: str | None = prop(
        "When the seed served the restored data.", default=None, string_format="date-time"
    )


@api_type
class UpgradeStall:
    """A rollout stopped by the health gate; kept until the spec changes."""

    rollout: str = prop(
        "The member pod hash (or version) whose rollout stalled: a new spec clears the stall."
    )
    member: str = prop("The member that did not become healthy in time.", default="")
    message: str = prop("What was seen and what to do.", default="")


@api_type
class EtcdClusterStatus(StoredStatus):
    """The etcd cluster as the operator last observed it."""

    phase: str = prop(
        "Summary for humans: Creating, Running, Scaling, Upgrading, Healing, Degraded or Paused.",
        default="",
    )
    observed_generation: int = prop(
        "metadata.generation of the spec this status reflects.", default=0, int_format="int64"
    )
    cluster_id: str = prop(
        "etcd cluster ID in hexadecimal, recorded once the cluster has formed and never cleared "
        "(it tells a lost cluster from one not created yet).",
        default="",
        json_name="clusterID",
    )
    members: tuple[MemberStatus, ...] = prop(
        "Members of the etcd cluster.", default=(), list_map_keys=("name",)
    )
    ready_members: int = prop("Number of Ready voting members.", default=0)
    current_version: str = prop(
        "Lowest etcd version among the members (the cluster runs at this version).", default=""
    )
    target_version: str = prop(
        "The version the members are being moved to (spec.version as last acted on).", default=""
    )
    cluster_version: str = prop(
        "The cluster version etcd reports: the version the cluster speaks, which moves to a new "
        "minor only once every member runs it.",
        default="",
    )
    stalled: UpgradeStall | None = prop(
        "Set when the health gate stopped a rollout; cleared when the spec changes.",
        default=None,
    )
    client_endpoints: tuple[str, ...] = prop("URLs clients connect to.", default=())
    defragmented_members: tuple[str, ...] = prop(
        "IDs (hexadecimal) of the members defragmented during the current NOSPACE alarm.",
        default=(),
    )
    compacted_revision: int = prop(
        "The revision the operator last compacted the history at, to recover from a NOSPACE alarm.",
        default=0,
        int_format="int64",
    )
    conditions: tuple[Condition, ...] = prop(
        "Available, Progressing, Degraded, EvenSize and, with a backup schedule, BackupReady.",
        default=(),
        list_map_keys=("type",),
    )
    restore: RestoreStatus | None = prop(
        "The last in-place restore from a backup (EtcdRestore).", default=None
    )


# ---------------------------------------------------------------- the object


@dataclass(frozen=True)
class EtcdCluster:
    """An EtcdCluster object: the metadata we use, the typed spec and the last status."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: EtcdClusterSpec
    status: EtcdClusterStatus
    being_deleted: bool = False

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> EtcdCluster:
        """Read an object as the API server returns it; InvalidObject names each bad field."""
        meta = obj.get("metadata") or {}
        spec = EtcdClusterSpec.from_dict(obj.get("spec"))
        return cls(
            name=str(meta.get("name", "")),
            namespace=str(meta.get("namespace", "")),
            uid=str(meta.get("uid", "")),
            generation=int(meta.get("generation", 0)),
            spec=spec,
            status=EtcdClusterStatus.from_dict(obj.get("status")),
            being_deleted=bool(meta.get("deletionTimestamp")),
        )

    def validate(self) -> list[FieldError]:
        errors = self.spec.validate()
        if len(self.name) > NAME_MAX or not re.match(NAME_PATTERN, self.name):
            errors.insert(0, FieldError("metadata.name", NAME_MESSAGE))
        return errors

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"
