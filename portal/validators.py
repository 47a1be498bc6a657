"""Text every API input must be: no control characters, no lone surrogates.

PostgreSQL cannot store NUL in text at all (psycopg raises DataError, which was a 500), and no
name, slug, email or token of ours has a reason to hold other C0 control characters or DEL; a lone
UTF-16 surrogate (JSON allows "\\ud800") cannot even be encoded to send to the database. Tab,
newline and carriage return stay allowed: multi-line text is legitimate.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible

_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def forbidden_character_find(value: str) -> str | None:
    """The first forbidden character of `value` as `U+XXXX`, or None when the text is clean."""
    match = _FORBIDDEN.search(value)
    return f"U+{ord(match.group()):04X}" if match else None


def text_problems(data: Any, where: str) -> Iterator[str]:
    """Reasons for every string in `data` (nested dicts and lists, keys included) that holds a
    forbidden character, each naming where it is, e.g. "body.image contains U+0000"."""
    if isinstance(data, str):
        if (found := forbidden_character_find(data)) is not None:
            yield f"{where} contains {found}"
    elif isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and (found := forbidden_character_find(key)) is not None:
                yield f"a field name in {where} contains {found}"
            yield from text_problems(value, f"{where}.{key}")
    elif isinstance(data, (list, tuple)):
        for index, value in enumerate(data):
            yield from text_problems(value, f"{where}[{index}]")


FORBIDDEN_TEXT_REASON = "Control characters (such as NUL) and lone surrogates are not allowed in text"


@deconstructible
class ControlCharacterValidator:
    """For serializer and form fields that take text outside the API's request-wide guard."""

    def __call__(self, value: Any) -> None:
        if isinstance(value, str) and (found := forbidden_character_find(value)) is not None:
            raise ValidationError(f"{FORBIDDEN_TEXT_REASON}; this value contains {found}.", code="control_character")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ControlCharacterValidator)
