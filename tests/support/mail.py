"""Read the mail the portal's processes wrote with Django's file backend."""

from __future__ import annotations

import re
import time
from email import message_from_string
from email.message import Message
from pathlib import Path

from django.conf import settings


def _messages() -> list[Message]:
    found = []
    for path in sorted(Path(settings.EMAIL_FILE_PATH).glob("*.log")):
        # The file backend separates messages with a line of 79 dashes.
        for chunk in path.read_text(errors="replace").split("-" * 79):
            if chunk.strip():
                found.append(message_from_string(chunk.strip()))
    return found


def _body(message: Message) -> str:
    if message.is_multipart():
        return "\n".join(_body(part) for part in message.get_payload())
    payload = message.get_payload(decode=True)
    return payload.decode(errors="replace") if payload else message.get_payload()


def wait_for_link(*, to: str, pattern: str, timeout: float = 30) -> str:
    """The newest link matching `pattern` in mail to `to`, waiting for it to arrive."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        links = [
            match.group(0)
            for message in _messages()
            if to.lower() in (message["To"] or "").lower()
            for match in regex.finditer(_body(message))
        ]
        if links:
            return links[-1]
        time.sleep(0.2)
    seen = [(m["To"], m["Subject"]) for m in _messages()]
    raise TimeoutError(
        f"no mail to {to} with a link like {pattern!r} within {timeout} s; mail in {settings.EMAIL_FILE_PATH}: {seen}"
    )
