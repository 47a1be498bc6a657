"""Labels: key=value pairs on projects and instances that chargeback groups and filters by
(cost-centre=CC-104). One definition of a valid label, used by forms, the API and the chargeback
filter alike.

Keys are lower-case, start with a letter and may hold digits, '-', '_', '.' and '/' (the shape
of Kubernetes label keys, which finance tools already expect); values are up to 63 printable
characters without '=' or ','. At most 16 per object, so a label filter stays one index probe.
"""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

LABEL_KEY = re.compile(r"^[a-z][a-z0-9._/-]{0,62}$")
LABEL_VALUE = re.compile(r"^[^=,\s][^=,]{0,62}$")
LABELS_MAX = 16


def label_pair_parse(text: str) -> tuple[str, str]:
    """'key=value' → (key, value), or a ValidationError saying what is wrong with it."""
    key, sep, value = text.strip().partition("=")
    key, value = key.strip(), value.strip()
    if not sep:
        raise ValidationError(f"“{text.strip()}” is not key=value.")
    if not LABEL_KEY.match(key):
        raise ValidationError(
            f"Label key “{key}”: use lower-case letters, digits and - _ . /, starting with a letter (at most 63)."
        )
    if not LABEL_VALUE.match(value) or value != value.strip():
        raise ValidationError(f"Label value of “{key}”: 1 to 63 characters, without = or a comma.")
    return key, value


def labels_parse(text: str) -> dict[str, str]:
    """Labels written as 'a=1, b=2' (commas or new lines between pairs) → a dict. Every bad pair
    is reported at once; a key given twice is an error, not a silent last-wins."""
    labels: dict[str, str] = {}
    errors: list[str] = []
    for part in re.split(r"[,\n]", text or ""):
        if not part.strip():
            continue
        try:
            key, value = label_pair_parse(part)
        except ValidationError as exc:
            errors.extend(exc.messages)
            continue
        if key in labels:
            errors.append(f"Label key “{key}” is given twice.")
        labels[key] = value
    if len(labels) > LABELS_MAX:
        errors.append(f"At most {LABELS_MAX} labels.")
    if errors:
        raise ValidationError(errors)
    return labels


def labels_validate(value: object) -> dict[str, str]:
    """A labels mapping from JSON (the API) checked the same way as text from a form."""
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValidationError("Labels are an object of string keys to string values.")
    # Pair by pair, not joined into text: a comma inside a value must be reported as a bad
    # value, not split into a second "pair" with a confusing message.
    labels: dict[str, str] = {}
    errors: list[str] = []
    for key, text in value.items():
        try:
            pair_key, pair_value = label_pair_parse(f"{key}={text}")
        except ValidationError as exc:
            errors.extend(exc.messages)
            continue
        if pair_key != key or pair_value != text:
            errors.append(f"Label “{key}”: no spaces around the key or the value.")
            continue
        labels[key] = text
    if len(value) > LABELS_MAX:
        errors.append(f"At most {LABELS_MAX} labels.")
    if errors:
        raise ValidationError(errors)
    return labels


def labels_format(labels: dict[str, str]) -> str:
    """The text a form shows for `labels`, which labels_parse reads back to the same dict."""
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
