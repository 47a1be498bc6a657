"""A user's SSH public keys (issue 12, item 1): the parser and services, the page and the API.

Keys are real: made by OpenSSH's ssh-keygen (Debian's openssh-client) once per session, and
their fingerprints are compared with what `ssh-keygen -l` prints.
"""

from __future__ import annotations

import base64
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.http import Http404
from django.urls import reverse
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.accounts import services
from apps.accounts.models import Role, SshKey
from apps.accounts.selectors import organization_access_get, ssh_keys_list
from apps.accounts.ssh_keys import NOT_A_KEY, PRIVATE_KEY, ssh_key_add, ssh_key_delete, ssh_public_key_parse
from tests.factories.accounts import UserFactory

pytestmark = pytest.mark.django_db

SSH_KEYGEN = shutil.which("ssh-keygen")
API = "/api/v1/ssh-keys/"


class Keys:
    """Key pairs made by ssh-keygen in one folder: `public(name)`, `private(name)`, `fingerprint(name)`."""

    def __init__(self, folder: Path):
        assert SSH_KEYGEN, "ssh-keygen is needed (Debian: apt-get install openssh-client)"
        self.folder = folder

    def make(self, name: str, *args: str) -> None:
        path = self.folder / name
        subprocess.run([SSH_KEYGEN, "-q", "-N", "", "-C", f"{name}@test", "-f", str(path), *args], check=True)

    def public(self, name: str) -> str:
        return (self.folder / f"{name}.pub").read_text()

    def private(self, name: str) -> str:
        return (self.folder / name).read_text()

    def fingerprint(self, name: str) -> str:
        # "256 SHA256:abc… ed25519@test (ED25519)"
        out = subprocess.run([SSH_KEYGEN, "-lf", str(self.folder / f"{name}.pub")], check=True, capture_output=True)
        return out.stdout.decode().split()[1]


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> Keys:
    keys = Keys(tmp_path_factory.mktemp("ssh-keys"))
    keys.make("ed25519", "-t", "ed25519")
    keys.make("ed25519-b", "-t", "ed25519")
    keys.make("rsa2048", "-t", "rsa", "-b", "2048")
    keys.make("rsa1024", "-t", "rsa", "-b", "1024")
    keys.make("ecdsa", "-t", "ecdsa", "-b", "256")
    keys.make("rsa-pem", "-t", "rsa", "-b", "2048", "-m", "PEM")
    return keys


def _wire(*fields: bytes) -> str:
    return base64.b64encode(b"".join(struct.pack(">I", len(f)) + f for f in fields)).decode()


def _errors(call) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as raised:
        call()
    return raised.value.message_dict


# --- the service --------------------------------------------------------------------------------


def test_an_ed25519_key_is_kept_normalised_with_the_fingerprint_ssh_keygen_prints(user, keys):
    # Given a .pub file pasted with a trailing newline and doubled spaces
    pasted = "  " + keys.public("ed25519").replace(" ", "   ") + "\r\n"
    # When it is added
    key = ssh_key_add(user=user, name="laptop", public_key=pasted)
    # Then it is stored as the one line OpenSSH wrote, with ssh-keygen's own fingerprint
    assert key.public_key == keys.public("ed25519").strip()
    assert key.fingerprint == keys.fingerprint("ed25519")
    assert key.key_type == "ssh-ed25519" and list(ssh_keys_list(user=user)) == [key]


def test_rsa_2048_is_accepted_and_rsa_1024_refused_with_its_size(user, keys):
    key = ssh_key_add(user=user, name="old box", public_key=keys.public("rsa2048"))
    assert key.fingerprint == keys.fingerprint("rsa2048") and key.key_type == "ssh-rsa"

    errors = _errors(lambda: ssh_key_add(user=user, name="older box", public_key=keys.public("rsa1024")))
    assert "1024 bits" in errors["public_key"][0] and "2048" in errors["public_key"][0]
    assert SshKey.objects.count() == 1


def test_ecdsa_and_dsa_are_refused_naming_the_type_and_what_is_accepted(user, keys):
    errors = _errors(lambda: ssh_key_add(user=user, name="ecdsa", public_key=keys.public("ecdsa")))
    assert "ecdsa-sha2-nistp256 keys are not accepted" in errors["public_key"][0]
    assert "ssh-ed25519" in errors["public_key"][0] and "ssh-rsa of at least 2048 bits" in errors["public_key"][0]

    # OpenSSH no longer makes DSA keys; this one has the DSA wire layout (type, p, q, g, y).
    dsa = "ssh-dss " + _wire(b"ssh-dss", b"\x00\xff" * 64, b"\x00\xff" * 10, b"\x02", b"\x03")
    errors = _errors(lambda: ssh_key_add(user=user, name="dsa", public_key=dsa))
    assert "ssh-dss keys are not accepted" in errors["public_key"][0]
    assert not SshKey.objects.exists()


@pytest.mark.parametrize("kind", ["openssh", "pem-rsa", "putty"])
def test_a_private_key_pasted_by_mistake_is_refused_and_named(user, keys, kind):
    text = {
        "openssh": lambda: keys.private("ed25519"),
        "pem-rsa": lambda: keys.private("rsa-pem"),
        "putty": lambda: "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: me\nPublic-Lines: 2\n",
    }[kind]()
    assert kind != "pem-rsa" or "BEGIN RSA PRIVATE KEY" in text  # the PEM form, not OpenSSH's
    errors = _errors(lambda: ssh_key_add(user=user, name="oops", public_key=text))
    assert errors["public_key"] == [PRIVATE_KEY]
    assert not SshKey.objects.exists()


@pytest.mark.parametrize(
    "text",
    [
        "hello",
        "hello world",
        "ssh-ed25519 not*base64",
        "ssh-ed25519 AAAA",  # valid base64, not a blob
        "ssh-ed25519 " + _wire(b"ssh-ed25519", b"short"),  # a point of the wrong size
        "ssh-ed25519 " + _wire(b"ssh-ed25519", b"x" * 32, b"trailing"),
        "ssh-rsa " + _wire(b"ssh-ed25519", b"x" * 32),  # the blob says another type
        "ssh-rsa " + _wire(b"ssh-rsa", b"\x01\x00\x01")[:12],  # cut short
        "ssh-rsa " + _wire(b"ssh-rsa", b"\x01\x00\x01", b"\xff" * 256),  # a negative modulus
    ],
)
def test_anything_that_is_not_a_public_key_is_refused(user, text):
    assert _errors(lambda: ssh_key_add(user=user, name="junk", public_key=text))["public_key"] == [NOT_A_KEY]


def test_a_half_copied_key_is_refused(user, keys):
    type_, blob, _ = keys.public("ed25519").split()
    errors = _errors(lambda: ssh_key_add(user=user, name="cut", public_key=f"{type_} {blob[:40]}"))
    assert errors["public_key"] == [NOT_A_KEY]


def test_a_name_is_required_and_two_keys_at_once_are_refused(user, keys):
    two = keys.public("ed25519") + keys.public("ed25519-b")
    errors = _errors(lambda: ssh_key_add(user=user, name="  ", public_key=two))
    assert "name" in errors["name"][0] and "one public key at a time" in errors["public_key"][0]


def test_a_duplicate_key_or_name_is_refused_naming_the_existing_key(user, keys):
    ssh_key_add(user=user, name="laptop", public_key=keys.public("ed25519"))
    again = keys.public("ed25519").replace("ed25519@test", "another comment")
    errors = _errors(lambda: ssh_key_add(user=user, name="desktop", public_key=again))
    assert errors["public_key"] == ["This key is already in your account as 'laptop'."]
    errors = _errors(lambda: ssh_key_add(user=user, name="laptop", public_key=keys.public("ed25519-b")))
    assert "already have a key named 'laptop'" in errors["name"][0]
    assert SshKey.objects.count() == 1


def test_two_people_may_register_the_same_key(user, keys):
    ssh_key_add(user=user, name="shared", public_key=keys.public("ed25519"))
    other = ssh_key_add(user=UserFactory(), name="shared", public_key=keys.public("ed25519"))
    assert other.fingerprint == keys.fingerprint("ed25519") and SshKey.objects.count() == 2


def test_deleting_another_users_key_is_a_404(user, keys):
    theirs = ssh_key_add(user=UserFactory(), name="theirs", public_key=keys.public("ed25519"))
    with pytest.raises(Http404):
        ssh_key_delete(user=user, key_id=theirs.pk)
    assert SshKey.objects.filter(pk=theirs.pk).exists()


# --- the page -----------------------------------------------------------------------------------


def test_the_page_adds_a_key_and_lists_it_with_type_and_fingerprint(client, user, keys):
    client.force_login(user)
    url = reverse("accounts:ssh-keys")
    assert 'data-testid="nav-ssh-keys"' in client.get(url).content.decode()  # reached from the nav
    response = client.post(url, {"name": "laptop", "public_key": keys.public("rsa2048")}, follow=True)
    page = response.content.decode()
    assert response.redirect_chain[-1][0] == url
    assert 'data-ssh-key="laptop"' in page and keys.fingerprint("rsa2048") in page and "RSA 2048" in page


def test_the_page_shows_the_error_under_the_field_and_keeps_what_was_pasted(client, user, keys):
    client.force_login(user)
    pasted = keys.public("rsa1024").strip()
    response = client.post(reverse("accounts:ssh-keys"), {"name": "old", "public_key": pasted})
    assert response.status_code == 400
    form = response.context["form"]
    assert "1024 bits" in form.errors["public_key"][0] and not form.non_field_errors()
    page = response.content.decode()
    assert pasted in page and 'value="old"' in page  # nothing typed is lost
    assert page.index("</textarea>") < page.index("has 1024 bits")  # the reason sits under the field
    assert not SshKey.objects.exists()


def test_the_page_does_not_give_back_a_private_key_pasted_by_mistake(client, user, keys):
    client.force_login(user)
    private = keys.private("ed25519")
    response = client.post(reverse("accounts:ssh-keys"), {"name": "oops", "public_key": private})
    page = response.content.decode()
    assert response.status_code == 400 and "This is a private key" in page
    assert private.splitlines()[1] not in page and 'value="oops"' in page


def test_the_page_deletes_only_your_own_keys(client, user, keys):
    mine = ssh_key_add(user=user, name="mine", public_key=keys.public("ed25519"))
    theirs = ssh_key_add(user=UserFactory(), name="theirs", public_key=keys.public("ed25519-b"))
    client.force_login(user)
    assert client.post(reverse("accounts:ssh-key-delete", args=[theirs.pk])).status_code == 404
    assert client.get(reverse("accounts:ssh-key-delete", args=[mine.pk])).status_code == 405  # POST only
    response = client.post(reverse("accounts:ssh-key-delete", args=[mine.pk]))
    assert response.status_code == 302
    assert list(SshKey.objects.values_list("name", flat=True)) == ["theirs"]


def test_the_page_needs_a_login(client):
    response = client.get(reverse("accounts:ssh-keys"))
    assert response.status_code == 302 and "login" in response["Location"]


def test_the_list_page_query_count_does_not_grow_with_keys(client, user, keys, django_assert_max_num_queries):
    client.force_login(user)
    url = reverse("accounts:ssh-keys")
    ssh_key_add(user=user, name="first", public_key=keys.public("ed25519"))
    with django_assert_max_num_queries(15) as few:
        assert client.get(url).status_code == 200
    # Many more keys: the same public key text is fine for the page (uniqueness is the service's).
    text = keys.public("rsa2048").strip()
    SshKey.objects.bulk_create(
        SshKey(owner=user, name=f"key {i}", public_key=text, fingerprint=f"SHA256:fake{i}") for i in range(20)
    )
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = client.get(url).content.decode()
    assert page.count("data-ssh-key=") == 21


# --- the API ------------------------------------------------------------------------------------


def test_the_api_lists_creates_and_deletes_the_callers_keys(api_client, user, keys):
    api_client.force_login(user)
    created = api_client.post(API, {"name": "laptop", "public_key": keys.public("ed25519")}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert body["type"] == "ssh-ed25519" and body["fingerprint"] == keys.fingerprint("ed25519")
    listed = api_client.get(API).json()["results"]
    assert [k["name"] for k in listed] == ["laptop"]
    assert api_client.delete(f"{API}{body['id']}/").status_code == 204
    assert api_client.get(API).json()["results"] == []


def test_the_api_refuses_bad_keys_with_the_reason_on_the_field(api_client, user, keys):
    api_client.force_login(user)
    for text, reason in [(keys.private("ed25519"), PRIVATE_KEY), ("garbage", NOT_A_KEY)]:
        response = api_client.post(API, {"name": "x", "public_key": text}, format="json")
        assert response.status_code == 400 and response.json()["public_key"] == [reason]
    response = api_client.post(API, {"name": "", "public_key": keys.public("ecdsa")}, format="json")
    assert response.status_code == 400 and set(response.json()) == {"name", "public_key"}
    assert api_client.post(API, {}, format="json").status_code == 400


def test_the_api_hides_other_peoples_keys(api_client, user, keys):
    theirs = ssh_key_add(user=UserFactory(), name="theirs", public_key=keys.public("ed25519"))
    api_client.force_login(user)
    assert api_client.get(API).json()["results"] == []
    assert api_client.get(f"{API}{theirs.pk}/").status_code == 404
    assert api_client.delete(f"{API}{theirs.pk}/").status_code == 404
    assert SshKey.objects.filter(pk=theirs.pk).exists()


def test_the_api_needs_a_person_not_an_organization_key(api_client, org, user, keys):
    assert api_client.get(API).status_code == 401
    access = organization_access_get(user=user, slug=org.slug)
    _, token = services.api_key_create(access=access, name="ci", role=Role.ADMIN)
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = api_client.post(API, {"name": "ci", "public_key": keys.public("ed25519")}, format="json")
    assert response.status_code == 403 and "API key" in response.json()["detail"]
    assert api_client.get(API).status_code == 403
    assert not SshKey.objects.exists()


def test_the_schema_documents_the_ssh_key_endpoints(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operations = {**schema["paths"]["/api/v1/ssh-keys/"], **schema["paths"]["/api/v1/ssh-keys/{id}/"]}
    assert {"get", "post", "delete"} <= set(operations)
    assert {"400", "401", "403"} <= set(schema["paths"]["/api/v1/ssh-keys/"]["post"]["responses"])
    assert "404" in schema["paths"]["/api/v1/ssh-keys/{id}/"]["delete"]["responses"]


# --- whatever is pasted, the answer is a key or a reason -----------------------------------------


@given(
    text=st.one_of(
        st.text(max_size=300),
        st.builds(
            lambda kind, fields, comment: f"{kind} {_wire(kind.encode(), *fields)} {comment}",
            st.sampled_from(["ssh-ed25519", "ssh-rsa", "ssh-dss", "ecdsa-sha2-nistp256"]),
            st.lists(st.binary(max_size=300), max_size=4),
            st.text(max_size=20),
        ),
    )
)
@settings(max_examples=300, derandomize=True, database=None, deadline=None)
def test_the_parser_answers_any_text_with_a_key_or_a_validation_error(text):
    try:
        parsed = ssh_public_key_parse(text)
    except ValidationError as error:
        assert error.messages and all(error.messages)
    else:
        assert parsed.key_type in ("ssh-ed25519", "ssh-rsa")
        assert ssh_public_key_parse(parsed.normalized) == parsed  # normalising is stable
