"""What every policy dialect validates alike, as the API server does: label selectors,
label keys and values, port names, mappings and lists, unknown fields; and the context
that names the file, document and field of every error."""

from __future__ import annotations

import re
from typing import Any

from ..documents import Document
from ..errors import PolicyError
from .ir import Requirement, Selector

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_SELECTOR_FIELDS = {"matchLabels", "matchExpressions"}

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_PORT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")


class Ctx:
    """Where we are inside one policy document, for error messages."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc

    def fail(self, field: str, message: str) -> PolicyError:
        return PolicyError(self.doc.path, f"{field}: {message}", self.doc.where)


# --default-namespace: where a namespaced policy without metadata.namespace goes (kubectl's
# -n). Set before the manifests are read; forked readers inherit it.
_DEFAULT_NAMESPACE: list[str | None] = [None]


def set_default_namespace(namespace: str | None) -> None:
    _DEFAULT_NAMESPACE[0] = namespace


def policy_namespace(ctx: Ctx, meta: dict[str, Any]) -> str:
    """A namespaced policy's namespace: its own, else --default-namespace; without
    either an error (never a silent `default`)."""
    namespace = meta.get("namespace")
    if namespace in (None, ""):
        namespace = _DEFAULT_NAMESPACE[0]
        if namespace is None:
            raise ctx.fail("metadata.namespace", "missing: a namespaced policy needs one "
                                                 "(or give --default-namespace NS, as "
                                                 "kubectl's -n)")
    if not isinstance(namespace, str) or not valid_dns_label(namespace):
        raise ctx.fail("metadata.namespace", f"invalid namespace {namespace!r} (a DNS "
                                             "label: lowercase letters, digits and '-')")
    return namespace


def valid_dns_subdomain(name: str) -> bool:
    return len(name) <= 253 and re.fullmatch(_DNS_SUBDOMAIN, name) is not None


def valid_dns_label(name: str) -> bool:
    return len(name) <= 63 and re.fullmatch(_DNS_LABEL, name) is not None


def valid_label_key(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not re.fullmatch(_DNS_SUBDOMAIN, prefix)):
        return False
    return 0 < len(name) <= 63 and re.fullmatch(_NAME, name) is not None


def valid_label_value(value: str) -> bool:
    return value == "" or (len(value) <= 63 and re.fullmatch(_NAME, value) is not None)


def valid_port_name(name: str) -> bool:
    return (len(name) <= 15 and _PORT_NAME.fullmatch(name) is not None
            and "--" not in name and re.search("[a-z]", name) is not None)


def mapping(ctx: Ctx, value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ctx.fail(field, "expected a mapping")
    return value


def as_list(ctx: Ctx, value: Any, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ctx.fail(field, "expected a list")
    return value


def no_unknown(ctx: Ctx, obj: dict[str, Any], allowed: set[str], field: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ctx.fail(f"{field}.{unknown[0]}", "unknown field")


def label_string(ctx: Ctx, value: Any, field: str) -> str:
    # YAML turns `true`, `1.0` and friends into non-strings; the API server would refuse
    # them as label values (they must be strings), and so do we.
    if not isinstance(value, str):
        raise ctx.fail(field, f"must be a string, got {value!r}")
    return value


def expression(ctx: Ctx, raw: Any, f: str) -> tuple[Any, str, list[str]]:
    """One matchExpressions item: its key (unchecked: dialects spell keys differently),
    operator and values, the operator and values validated."""
    expr = mapping(ctx, raw, f)
    no_unknown(ctx, expr, {"key", "operator", "values"}, f)
    op = expr.get("operator")
    if op not in OPERATORS:
        raise ctx.fail(f"{f}.operator", f"unsupported operator {op!r}; "
                                        f"expected one of {', '.join(OPERATORS)}")
    values = [label_string(ctx, v, f"{f}.values[{j}]")
              for j, v in enumerate(as_list(ctx, expr.get("values"), f"{f}.values"))]
    if op in ("In", "NotIn") and not values:
        raise ctx.fail(f"{f}.values", f"must be non-empty when operator is {op}")
    if op in ("Exists", "DoesNotExist") and values:
        raise ctx.fail(f"{f}.values", f"must be empty when operator is {op}")
    return expr.get("key"), str(op), values


def selector(ctx: Ctx, raw: Any, field: str) -> Selector:
    raw = mapping(ctx, raw, field)
    no_unknown(ctx, raw, _SELECTOR_FIELDS, field)
    reqs: list[Requirement] = []
    for key, value in mapping(ctx, raw.get("matchLabels"), f"{field}.matchLabels").items():
        value = label_string(ctx, value, f"{field}.matchLabels.{key}")
        if not isinstance(key, str) or not valid_label_key(key):
            raise ctx.fail(f"{field}.matchLabels", f"invalid label key {key!r}")
        if not valid_label_value(value):
            raise ctx.fail(f"{field}.matchLabels.{key}", f"invalid label value {value!r}")
        reqs.append(Requirement(str(key), "In", (value,)))
    for i, expr in enumerate(as_list(ctx, raw.get("matchExpressions"),
                                   f"{field}.matchExpressions")):
        f = f"{field}.matchExpressions[{i}]"
        key, op, values = expression(ctx, expr, f)
        if not isinstance(key, str) or not valid_label_key(key):
            raise ctx.fail(f"{f}.key", f"invalid label key {key!r}")
        for j, v in enumerate(values):
            if not valid_label_value(v):
                raise ctx.fail(f"{f}.values[{j}]", f"invalid label value {v!r}")
        reqs.append(Requirement(key, op, tuple(sorted(set(values)))))
    return Selector(tuple(sorted(set(reqs), key=lambda r: (r.key, r.op, r.values))))
