"""SSH public keys of a user: parsing the OpenSSH one-line format, and the add/delete services.

Kept apart from services.py (organizations, invitations, API keys) because the parser is most of
it. The wire format is read here with `struct` rather than a crypto library: a public key needs no
cryptography to be checked, only its framing (RFC 4253 §6.6, RFC 8709 §4): a blob of
length-prefixed strings whose first string repeats the key type; for ssh-rsa then mpint e and
mpint n, for ssh-ed25519 the 32-byte point.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import Http404

from portal.validators import forbidden_character_find

from .models import SshKey, User
from .selectors import ssh_key_get

ACCEPTED_TYPES = ("ssh-ed25519", "ssh-rsa")
RSA_MIN_BITS = 2048
# An RSA key of 16384 bits is about 2,800 characters; anything much longer is not a public key.
MAX_KEY_LENGTH = 8192
ACCEPTED = f"ssh-ed25519 (recommended), or ssh-rsa of at least {RSA_MIN_BITS} bits"

PRIVATE_KEY = "This is a private key. Paste the public key (the .pub file), and keep the private key secret."
NOT_A_KEY = (
    "This is not a valid OpenSSH public key. It should be one line like "
    "'ssh-ed25519 AAAAC3Nza… you@laptop', as in your ~/.ssh/id_ed25519.pub."
)
# Markers of private keys in the formats people have at hand: OpenSSH, PEM (PKCS#1/#8, "BEGIN RSA
# PRIVATE KEY", "BEGIN ENCRYPTED PRIVATE KEY"), PuTTY's .ppk.
_PRIVATE_MARKERS = re.compile(r"PRIVATE KEY-----|PuTTY-User-Key-File-", re.IGNORECASE)
_KEY_TYPE = re.compile(r"[a-z0-9][a-z0-9.@-]{0,63}")


@dataclass(frozen=True)
class ParsedKey:
    key_type: str
    bits: int
    blob: bytes
    comment: str

    @property
    def normalized(self) -> str:
        text = f"{self.key_type} {base64.b64encode(self.blob).decode()}"
        return f"{text} {self.comment}" if self.comment else text

    @property
    def fingerprint(self) -> str:
        # As `ssh-keygen -l` prints it: unpadded base64 of the blob's SHA-256.
        return "SHA256:" + base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")

    @property
    def label(self) -> str:
        return f"{self.key_type.removeprefix('ssh-').upper()} {self.bits}"


class _Reader:
    """Length-prefixed fields of an SSH wire blob; any overrun is a malformed key."""

    def __init__(self, blob: bytes):
        self.blob, self.at = blob, 0

    def string(self) -> bytes:
        if self.at + 4 > len(self.blob):
            raise ValueError("truncated length")
        (length,) = struct.unpack_from(">I", self.blob, self.at)
        start, self.at = self.at + 4, self.at + 4 + length
        if self.at > len(self.blob):
            raise ValueError("truncated string")
        return self.blob[start : self.at]

    def mpint(self) -> int:
        data = self.string()
        if data and data[0] & 0x80:
            raise ValueError("negative mpint")
        return int.from_bytes(data, "big")

    @property
    def done(self) -> bool:
        return self.at == len(self.blob)


def ssh_public_key_parse(text: str) -> ParsedKey:
    """The key in `text` (one OpenSSH public key line), or ValidationError saying what is wrong."""
    text = (text or "").strip()
    if _PRIVATE_MARKERS.search(text):
        raise ValidationError(PRIVATE_KEY)
    if not text:
        raise ValidationError("Paste your public key.")
    if text.startswith("---- BEGIN SSH2 PUBLIC KEY"):
        raise ValidationError(
            "This is an SSH2 (RFC 4716) public key. Convert it to OpenSSH's one-line format with "
            "'ssh-keygen -i -f key.pub' and paste that."
        )
    if len(text) > MAX_KEY_LENGTH:
        raise ValidationError(f"This is too long for a public key (at most {MAX_KEY_LENGTH} characters).")
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        raise ValidationError("Paste one public key at a time (one line).")
    if forbidden_character_find(text):
        raise ValidationError(NOT_A_KEY)
    parts = text.split()
    if len(parts) < 2:
        raise ValidationError(NOT_A_KEY)
    key_type, encoded, comment = parts[0], parts[1], " ".join(parts[2:])
    try:
        blob = base64.b64decode(encoded, validate=True)
        reader = _Reader(blob)
        blob_type = reader.string()
    except (binascii.Error, ValueError) as exc:
        raise ValidationError(NOT_A_KEY) from exc
    if blob_type != key_type.encode() or not _KEY_TYPE.fullmatch(key_type):
        raise ValidationError(NOT_A_KEY)
    if key_type not in ACCEPTED_TYPES:
        raise ValidationError(f"{key_type} keys are not accepted. Use {ACCEPTED}.")
    try:
        if key_type == "ssh-ed25519":
            point = reader.string()
            if len(point) != 32:
                raise ValueError("an ed25519 key is 32 bytes")
            bits = 256
        else:
            exponent, modulus = reader.mpint(), reader.mpint()
            if exponent < 3 or exponent % 2 == 0 or modulus % 2 == 0:
                raise ValueError("not an RSA key")
            bits = modulus.bit_length()
        if not reader.done:
            raise ValueError("trailing bytes")
    except ValueError as exc:
        raise ValidationError(NOT_A_KEY) from exc
    if key_type == "ssh-rsa" and bits < RSA_MIN_BITS:
        raise ValidationError(
            f"This RSA key has {bits} bits; at least {RSA_MIN_BITS} are required. Generate a new key, "
            "preferably with 'ssh-keygen -t ed25519'."
        )
    return ParsedKey(key_type=key_type, bits=bits, blob=blob, comment=comment)


@transaction.atomic
def ssh_key_add(*, user: User, name: str, public_key: str) -> SshKey:
    name = (name or "").strip()
    errors: dict[str, list[str]] = {}
    if not name:
        errors["name"] = ["Give the key a name, such as the computer it lives on."]
    elif len(name) > SshKey._meta.get_field("name").max_length:
        errors["name"] = [f"At most {SshKey._meta.get_field('name').max_length} characters."]
    elif forbidden_character_find(name):
        errors["name"] = ["Control characters are not allowed in a name."]
    parsed = None
    try:
        parsed = ssh_public_key_parse(public_key)
    except ValidationError as error:
        errors["public_key"] = error.messages
    if parsed is not None:
        existing = SshKey.objects.filter(owner=user, fingerprint=parsed.fingerprint).first()
        if existing is not None:
            errors["public_key"] = [f"This key is already in your account as '{existing.name}'."]
    if "name" not in errors and SshKey.objects.filter(owner=user, name=name).exists():
        errors["name"] = [f"You already have a key named '{name}'. Choose another name."]
    if errors:
        raise ValidationError(errors)
    try:
        # A savepoint, so a twin added concurrently is reported as the checks above report it.
        with transaction.atomic():
            return SshKey.objects.create(
                owner=user, name=name, public_key=parsed.normalized, fingerprint=parsed.fingerprint
            )
    except IntegrityError as exc:
        raise ValidationError({"public_key": ["This key or this name was just added to your account."]}) from exc


@transaction.atomic
def ssh_key_delete(*, user: User, key_id: int) -> None:
    """Remove one of `user`'s keys; another user's key (or none) is a 404."""
    key = ssh_key_get(user=user, key_id=key_id)
    deleted, _ = SshKey.objects.filter(pk=key.pk, owner=user).delete()
    if not deleted:  # deleted by a concurrent request in between
        raise Http404("No such SSH key.")
