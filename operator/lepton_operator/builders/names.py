"""Names and label values derived from a Lepton resource's name, always valid for what they name.

A custom resource's name is a DNS-1123 subdomain: up to 253 characters, dots allowed. What
Lepton derives from it is stricter: a PyTorchJob's name becomes its pods' hostnames and its
per-replica Services (`<name>-worker-1023`: DNS-1035 labels of at most 63 characters), and a
label value holds at most 63. A name that already fits is used as it is; one that does not is
shortened and made valid, with a stable hash of the whole name appended, so two resources
never get the same child and the same resource always gets the same one.

This module is the one place that decides; tests/test_names.py proves over generated names
that every result is valid.
"""

from __future__ import annotations

import hashlib
import re

DNS_LABEL_MAX = 63
LABEL_VALUE_MAX = 63
HASH_LENGTH = 8
# The longest suffix the training operator adds to a PyTorchJob's name: "-worker-1022"
# (workers <= 1024, the master is replica 0 of its own type).
REPLICA_SUFFIX_MAX = len("-worker-1022")
PYTORCHJOB_NAME_MAX = DNS_LABEL_MAX - REPLICA_SUFFIX_MAX

_DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def is_dns_label(name: str, limit: int = DNS_LABEL_MAX) -> bool:
    """A DNS-1035 label: what Services, hostnames and PyTorchJobs need."""
    return len(name) <= limit and _DNS_1035_LABEL.match(name) is not None


def is_label_value(value: str) -> bool:
    return len(value) <= LABEL_VALUE_MAX and _LABEL_VALUE.match(value) is not None


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:HASH_LENGTH]


def dns_label(name: str, suffix: str = "", limit: int = DNS_LABEL_MAX) -> str:
    """`name + suffix` when that is a DNS-1035 label within `limit`, else a valid, stable,
    shortened form: the name's letters and digits, '-' for anything else, then a hash.

    `suffix` is lowercase letters, digits and '-', and shorter than `limit` by the hash.
    """
    whole = f"{name}{suffix}"
    if is_dns_label(whole, limit):
        return whole
    cleaned = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not cleaned or not cleaned[0].isalpha():
        cleaned = f"x-{cleaned}".rstrip("-")
    room = limit - len(suffix) - HASH_LENGTH - 1
    stem = cleaned[:room].rstrip("-") or "x"
    return f"{stem}-{_digest(whole)}{suffix}"


def label_value(value: str) -> str:
    """The value itself when it is a valid label value, else a shortened one with a hash."""
    if is_label_value(value):
        return value
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", value)[: LABEL_VALUE_MAX - HASH_LENGTH - 1]
    stem = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", stem)
    return f"{stem}-{_digest(value)}" if stem else _digest(value)


def pytorchjob_name(owner_name: str, suffix: str = "") -> str:
    """A PyTorchJob's name: room left for the training operator's replica suffixes."""
    return dns_label(owner_name, suffix, PYTORCHJOB_NAME_MAX)
