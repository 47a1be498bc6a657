"""The user's SSH keys page: list, add, delete. Keys belong to the person, so the page sits with the
user's own settings, outside any organization."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from portal.ui.tables import table_configure

from ..selectors import ssh_key_get, ssh_keys_list
from ..ssh_keys import PRIVATE_KEY, ssh_key_add, ssh_key_delete
from ..tables import SshKeyTable
from .common import add_service_errors


class SshKeyAddForm(forms.Form):
    # Not required here: ssh_key_add checks both and says what is wrong, for the page and the API alike.
    name = forms.CharField(required=False, max_length=80, help_text="Where the key lives, e.g. 'work laptop'.")
    public_key = forms.CharField(
        required=False,
        label="Public key",
        strip=False,
        help_text="The contents of your .pub file, e.g. ~/.ssh/id_ed25519.pub. ed25519, or RSA of at least 2048 bits.",
        widget=forms.Textarea(
            attrs={
                "rows": 4,
                "spellcheck": "false",
                "autocomplete": "off",
                "placeholder": "ssh-ed25519 AAAAC3Nza… you@laptop",
            }
        ),
    )


@login_required
def ssh_keys_page(request):
    form = SshKeyAddForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                key = ssh_key_add(user=request.user, **form.cleaned_data)
            except ValidationError as error:
                add_service_errors(form, error)
                if PRIVATE_KEY in form.errors.get("public_key", []):
                    # The one paste not given back: a secret should not travel back and forth in the page.
                    form.data = form.data.copy()
                    form.data["public_key"] = ""
            else:
                messages.success(request, f"Key {key.name} added ({key.fingerprint}).")
                return redirect("accounts:ssh-keys")
        status = 400
    table = table_configure(
        SshKeyTable(ssh_keys_list(user=request.user), csrf_token=get_token(request)), params=request.GET
    )
    return render(request, "accounts/ssh_keys.html", {"form": form, "ssh_keys_table": table}, status=status)


@login_required
@require_POST
def ssh_key_delete_view(request, key_id: int):
    key = ssh_key_get(user=request.user, key_id=key_id)
    ssh_key_delete(user=request.user, key_id=key.pk)
    messages.success(request, f"Key {key.name} deleted. It is no longer offered for new instances.")
    return redirect("accounts:ssh-keys")
