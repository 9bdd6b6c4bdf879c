"""Who may connect to whom under a set of NetworkPolicies: the Kubernetes semantics, enough to check ours.

A connection from pod A to pod B on a port is allowed when A's egress allows it and B's ingress allows it.
A direction is open for a pod that no policy of that type selects; otherwise some selecting policy's rule
must match the peer (pod and namespace selectors; ipBlock is not used here) and the port.
"""

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict[str, str] = field(hash=False)
    name: str = ""

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace}


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def peer_matches(peer: dict[str, Any], policy_namespace: str, other: Pod) -> bool:
    assert "ipBlock" not in peer, "ipBlock peers are not evaluated here"
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], other.namespace_labels):
            return False
    elif other.namespace != policy_namespace:
        return False
    return selects(peer.get("podSelector"), other.labels)


def port_matches(ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    return any(p.get("protocol", "TCP") == protocol and p.get("port") in (None, port) for p in ports)


class Policies:
    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.policies = [o for o in objects if o["kind"] == "NetworkPolicy"]

    def _allows(self, direction: str, pod: Pod, other: Pod, port: int, protocol: str) -> bool:
        kind, peers_key = ("Ingress", "from") if direction == "ingress" else ("Egress", "to")
        selecting = [
            p
            for p in self.policies
            if p["metadata"]["namespace"] == pod.namespace
            and kind in p["spec"].get("policyTypes", ["Ingress"])
            and selects(p["spec"]["podSelector"], pod.labels)
        ]
        if not selecting:
            return True
        for policy in selecting:
            for rule in policy["spec"].get(direction) or []:
                peers = rule.get(peers_key)
                if (not peers or any(peer_matches(peer, pod.namespace, other) for peer in peers)) and port_matches(
                    rule.get("ports"), port, protocol
                ):
                    return True
        return False

    def allowed(self, source: Pod, target: Pod, port: int, protocol: str = "TCP") -> bool:
        return self._allows("egress", source, target, port, protocol) and self._allows(
            "ingress", target, source, port, protocol
        )
