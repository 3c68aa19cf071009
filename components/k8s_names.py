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


def _fits(pattern: re.Pattern, value: str, limit: int) -> bool:
    """``value`` is at most ``limit`` characters and matches ``pattern`` whole."""
    return len(value) <= limit and pattern.fullmatch(value) is not None


def dns_subdomain(flag: str, value: str) -> str:
    """A DNS-1123 subdomain (Secret, StorageClass names): lowercase, digits, '-' and '.'."""
    if not _fits(_DNS_SUBDOMAIN, value, 253):
        raise ConfigError(
            f"{flag} {value!r}: not a Kubernetes name (lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, at most 253 characters)"
        )
    return value


def qualified_name(flag: str, value: str, need_prefix: bool = False) -> str:
    """A label key, taint key or resource name: ``[prefix/]name`` (prefix a DNS subdomain,
    name at most 63 characters of letters, digits, '-', '_', '.')."""
    prefix, slash, name = value.rpartition("/")
    ok = _fits(_QUALIFIED, name, 63) and (not slash or _fits(_DNS_SUBDOMAIN, prefix, 253))
    if not ok or (need_prefix and not slash):
        shape = "DOMAIN/NAME (e.g. nvidia.com/gpu)" if need_prefix else "[DOMAIN/]NAME"
        raise ConfigError(
            f"{flag} {value!r}: not a Kubernetes qualified name {shape}: NAME at most 63 "
            "letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        )
    return value


def label_value(flag: str, value: str) -> str:
    """A label value: empty, or at most 63 letters, digits, '-', '_', '.' (alphanumeric ends)."""
    if not _fits(_LABEL_VALUE, value, 63):
        raise ConfigError(
            f"{flag} value {value!r}: not a Kubernetes label value (at most 63 letters, "
            "digits, '-', '_' or '.', starting and ending with a letter or digit)"
        )
    return value
