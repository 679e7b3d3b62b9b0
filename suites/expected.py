"""Expected-outcome manifests, checked both ways (as GradBench does).

An implementation declares which cells are known not to be ``ok``: a list of
rules, either as its attribute ``expected_outcomes`` or, for the built-ins,
in ``impls/expected/<name>.json``. A rule names an ``outcome`` and any of
``problem``, ``op``, ``method``, ``dtype``, ``size`` (a value or a list; absent
means any); the first rule that matches a cell gives its expected outcome,
and a cell no rule matches is expected ``ok``. ``unsupported`` is accepted
where ``ok`` is expected: an implementation declares what it supports through
``supports``, so ordinary support needs no manifest entry. So is
``ill_conditioned``, no verdict on the implementation either: an input point
of another seed can land where the problem is ill-conditioned (numpy's
fd_central gradient of nonlinear_system, ok at seed 0, is 4.4e-6 off at seed
1, condition 2.4e15, and ``check --seed 1`` exited 1 for it). Any other
difference from the expectation is a surprise, in either direction: a listed
failure that now passes is reported as well as a new failure. Without a
manifest, any ``ok``, ``unsupported`` or ``ill_conditioned`` is expected.
"""

from __future__ import annotations

import json
from importlib.resources import files

from adjointbench.impls.registry import built_in_name
from adjointbench.suites.results import FAILURES, OUTCOMES, Record

MANIFESTS = files("adjointbench.impls") / "expected"  # package data
FIELDS = ("problem", "op", "method", "dtype", "size")
# (expected, outcome) pairs that are no surprise: the cell gave no verdict
NO_VERDICT = (("ok", "unsupported"), ("ok", "ill_conditioned"))


class ManifestError(ValueError):
    """An implementation's expected outcomes are not a list of rules."""


def load_manifest(name: str, declared: list[dict] | None = None) -> list[dict] | None:
    """The implementation's rules (``declared``, its ``expected_outcomes``, else
    the built-in manifest of that name, or of the built-in a ``module:object``
    name is the entry point of), or None when it declares none. Raises
    ManifestError naming the first rule that is not one."""
    rules = declared
    path = MANIFESTS / f"{built_in_name(name) or name}.json"
    if rules is None and path.is_file():
        rules = json.loads(path.read_text(encoding="utf-8"))
    if rules is None:
        return None
    if not isinstance(rules, (list, tuple)):
        raise ManifestError(f"the expected outcomes of {name!r} are a {type(rules).__name__}: "
                            f"declare a list of rules; {RULE}")
    for rule in rules:
        if not _is_rule(rule):
            raise ManifestError(f"bad rule {rule!r} in the expected outcomes of {name!r}: "
                                f"{RULE}")
    return list(rules)


RULE = (f"a rule is a dict with an outcome ({', '.join(OUTCOMES)}) and any of the fields "
        f"{', '.join(FIELDS)} and note")


def _is_rule(rule) -> bool:
    return (isinstance(rule, dict) and rule.get("outcome") in OUTCOMES
            and all(isinstance(k, str) for k in rule)
            and not set(rule) - {"outcome", "note", *FIELDS})


def _matches(rule: dict, record: Record) -> bool:
    for field in FIELDS:
        if field in rule:
            allowed = rule[field] if isinstance(rule[field], list) else [rule[field]]
            if getattr(record, field) not in allowed:
                return False
    return True


def expected_outcome(record: Record, rules: list[dict]) -> str:
    return next((rule["outcome"] for rule in rules if _matches(rule, record)), "ok")


def surprises(records: list[Record], manifests: dict[str, list[dict] | None]) -> list[tuple]:
    """(record, expected) for every check cell whose outcome was not expected."""
    found = []
    for record in records:
        if record.suite != "check":
            continue
        rules = manifests.get(record.impl)
        if rules is None:
            if record.outcome in FAILURES:
                found.append((record, "ok"))
            continue
        expected = expected_outcome(record, rules)
        if record.outcome != expected and (expected, record.outcome) not in NO_VERDICT:
            found.append((record, expected))
    return found
