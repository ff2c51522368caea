"""The queue arguments RabbitMQ knows, per queue type, and the values it accepts.

Measured on RabbitMQ 3.10: a queue type refuses the known arguments it does not
support (PRECONDITION_FAILED "invalid arg"), and every argument it supports is
compared on redeclare (PRECONDITION_FAILED "inequivalent arg"). Arguments
RabbitMQ does not know at all are stored and never compared.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "ALL_QUEUE_ARGUMENTS",
    "EXCHANGE_COMPARED_ARGUMENTS",
    "QUEUE_ARGUMENTS_BY_TYPE",
    "check_queue_argument",
]

_DEAD_LETTERING = frozenset({"x-dead-letter-exchange", "x-dead-letter-routing-key"})

QUEUE_ARGUMENTS_BY_TYPE: dict[str, frozenset[str]] = {
    "classic": frozenset(
        {
            "x-queue-type",
            "x-expires",
            "x-message-ttl",
            "x-max-length",
            "x-max-length-bytes",
            "x-max-priority",
            "x-overflow",
            "x-queue-mode",
            "x-queue-version",
            "x-single-active-consumer",
            "x-queue-master-locator",
        }
        | _DEAD_LETTERING
    ),
    "quorum": frozenset(
        {
            "x-queue-type",
            "x-expires",
            "x-message-ttl",
            "x-dead-letter-strategy",
            "x-max-length",
            "x-max-length-bytes",
            "x-max-in-memory-length",
            "x-max-in-memory-bytes",
            "x-overflow",
            "x-single-active-consumer",
            "x-quorum-initial-group-size",
            "x-queue-leader-locator",
            "x-delivery-limit",
        }
        | _DEAD_LETTERING
    ),
    "stream": frozenset(
        {
            "x-queue-type",
            "x-max-length-bytes",
            "x-max-age",
            "x-stream-max-segment-size-bytes",
            "x-initial-cluster-size",
            "x-queue-leader-locator",
        }
    ),
}
ALL_QUEUE_ARGUMENTS: frozenset[str] = frozenset().union(*QUEUE_ARGUMENTS_BY_TYPE.values())

# exchange.declare compares only these arguments (plus type and flags).
EXCHANGE_COMPARED_ARGUMENTS = frozenset({"alternate-exchange"})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_at_least(minimum: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if _is_int(value) and value >= minimum:
            return None
        return f"expected an integer >= {minimum}, got {value!r}"

    return check


def _one_of(*choices: Any) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value in choices and type(value) in {type(c) for c in choices}:
            return None
        listed = ", ".join(repr(c) for c in choices)
        return f"expected one of {listed}, got {value!r}"

    return check


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else f"expected a string, got {value!r}"


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"expected true or false, got {value!r}"


def _priority(value: Any) -> str | None:
    if _is_int(value) and 1 <= value <= 255:
        return None
    return f"expected an integer from 1 to 255, got {value!r}"


def _max_age(value: Any) -> str | None:
    if isinstance(value, str) and re.fullmatch(r"[0-9]+(Y|M|D|h|m|s)", value):
        return None
    return f"expected a duration such as '7D', '12h' or '30m' (units Y M D h m s), got {value!r}"


_VALUE_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "x-expires": _int_at_least(1),
    "x-message-ttl": _int_at_least(0),
    "x-max-length": _int_at_least(0),
    "x-max-length-bytes": _int_at_least(0),
    "x-max-in-memory-length": _int_at_least(0),
    "x-max-in-memory-bytes": _int_at_least(0),
    "x-delivery-limit": _int_at_least(0),
    "x-stream-max-segment-size-bytes": _int_at_least(1),
    "x-quorum-initial-group-size": _int_at_least(1),
    "x-initial-cluster-size": _int_at_least(1),
    "x-max-priority": _priority,
    "x-dead-letter-exchange": _string,
    "x-dead-letter-routing-key": _string,
    "x-dead-letter-strategy": _one_of("at-most-once", "at-least-once"),
    "x-queue-mode": _one_of("default", "lazy"),
    "x-queue-version": _one_of(1, 2),
    "x-single-active-consumer": _boolean,
    "x-queue-leader-locator": _one_of("client-local", "balanced"),
    "x-queue-master-locator": _one_of("client-local", "random", "min-masters"),
    "x-max-age": _max_age,
}
_OVERFLOW = {
    "classic": _one_of("drop-head", "reject-publish", "reject-publish-dlx"),
    # Quorum queues document no reject-publish-dlx (3.10 stores it but does not honour it).
    "quorum": _one_of("drop-head", "reject-publish"),
}


def check_queue_argument(queue_type: str, key: str, value: Any) -> str | None:
    """What is wrong with one queue argument for this queue type, or None if RabbitMQ takes it."""
    if key in ALL_QUEUE_ARGUMENTS and key not in QUEUE_ARGUMENTS_BY_TYPE[queue_type]:
        return f"RabbitMQ refuses {key} on {queue_type} queues"
    if key == "x-overflow":
        return _OVERFLOW[queue_type](value)
    check = _VALUE_CHECKS.get(key)
    return check(value) if check else None
