"""The leadership token's body: the last tick sent per schedule, versioned JSON.

Tokens merge by taking the latest tick of each schedule, so several tokens in the
leader queue (two beats seeding at once, a leader that died between publishing a
new token and acking the old one) add up to the same state whatever their order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from amqpq.errors import DecodeError

__all__ = ["TOKEN_CONTENT_TYPE", "TOKEN_VERSION", "BeatToken", "merge_ticks"]

TOKEN_VERSION = 1
TOKEN_CONTENT_TYPE = "application/json"


class BeatToken(BaseModel):
    """``{"amqpq_beat": 1, "ticks": {"<schedule>": "<last tick, ISO UTC>"}, ...}``.

    ``ticks`` holds, per schedule, the last tick sent (or, for a schedule seen for the
    first time, the instant it was first seen: ticks after it are due). Unknown keys
    are ignored so an older beat can read a newer token.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    amqpq_beat: int = TOKEN_VERSION
    ticks: dict[str, datetime] = Field(default_factory=dict)
    written_by: str = ""
    written_at: datetime | None = None

    @classmethod
    def decode(cls, body: bytes) -> BeatToken:
        try:
            token = cls.model_validate_json(body)
        except ValidationError as exc:
            raise DecodeError(f"not a beat token: {exc.errors()[0]['msg']}") from exc
        if token.amqpq_beat > TOKEN_VERSION:
            raise DecodeError(f"beat token version {token.amqpq_beat} is newer than this amqpq")
        return token

    def encode(self) -> bytes:
        ticks = {name: _iso(tick) for name, tick in sorted(self.ticks.items())}
        document = {
            "amqpq_beat": self.amqpq_beat,
            "ticks": ticks,
            "written_by": self.written_by,
            "written_at": _iso(self.written_at) if self.written_at else None,
        }
        return json.dumps(document, separators=(",", ":")).encode()


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def merge_ticks(
    *states: Mapping[str, datetime] | Iterable[tuple[str, datetime]],
) -> dict[str, datetime]:
    """The latest tick of each schedule over all states (commutative, idempotent)."""
    merged: dict[str, datetime] = {}
    for state in states:
        items = state.items() if isinstance(state, Mapping) else state
        for name, tick in items:
            tick = tick if tick.tzinfo else tick.replace(tzinfo=UTC)
            if name not in merged or tick > merged[name]:
                merged[name] = tick
    return merged
