"""Kubernetes' own rules for the names and labels ``compile`` writes into the pipeline YAML.

The rules of k8s.io/apimachinery's ``validation`` package: a value the API server would refuse
at run time (or, worse, read as something else: ``a=b,c=d`` as the value ``b,c=d``) is refused
at compile time, naming the flag.
"""

from __future__ import annotations

import re

from protloc.errors import ConfigError

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"  # a qualified name's name part
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_QUALIFIED = re.compile(_NAME)
_LABEL_VALUE = re.compile(rf"({_NAME})?")


def dns_subdomain(flag: str, value: str) -> str:
    """A DNS-1123 subdomain (Secret, StorageClass names): lowercase, digits, '-' and '.'."""
    if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        raise ConfigError(
            f"{flag} {value!r}: not a Kubernetes name (lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, at most 253 characters)"
        )
    return value


def qualified_name(flag: str, value: str, need_prefix: bool = False) -> str:
    """A label key, taint key or resource name: ``[prefix/]name`` (prefix a DNS subdomain,
    name at most 63 characters of letters, digits, '-', '_', '.')."""
    prefix, slash, name = value.rpartition("/")
    ok = len(name) <= 63 and _QUALIFIED.fullmatch(name) is not None
    if slash:
        ok = ok and len(prefix) <= 253 and _DNS_SUBDOMAIN.fullmatch(prefix) is not None
    if not ok or (need_prefix and not slash):
        shape = "DOMAIN/NAME (e.g. nvidia.com/gpu)" if need_prefix else "[DOMAIN/]NAME"
        raise ConfigError(
            f"{flag} {value!r}: not a Kubernetes qualified name {shape}: NAME at most 63 "
            "letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        )
    return value


def label_value(flag: str, value: str) -> str:
    """A label value: empty, or at most 63 letters, digits, '-', '_', '.' (alphanumeric ends)."""
    if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
        raise ConfigError(
            f"{flag} value {value!r}: not a Kubernetes label value (at most 63 letters, "
            "digits, '-', '_' or '.', starting and ending with a letter or digit)"
        )
    return value
