"""JSON values crossing the durable boundary: encoded once, size-checked, clearly refused."""

from __future__ import annotations

import json
from typing import Any

from stepstone.domain.errors import NotSerializableError, PayloadTooLargeError
from stepstone.domain.limits import MAX_JSON_BYTES


def encode(value: Any, *, what: str, limit: int = MAX_JSON_BYTES) -> str:
    """Encode ``value`` as compact JSON, refusing non-JSON values and values over ``limit``."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise NotSerializableError(f"{what} is not JSON-serialisable: {exc}") from None
    if len(text) * 4 <= limit:  # no UTF-8 character is longer than four bytes
        return text
    size = len(text.encode())
    if size > limit:
        raise PayloadTooLargeError(
            f"{what} is {size:,} bytes of JSON; the limit is {limit:,} bytes"
        )
    return text


def decode(text: str | None) -> Any:
    return None if text is None else json.loads(text)
