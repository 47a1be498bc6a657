"""The labels form of an instance's page: `key=value, key=value`, checked by the one label rule."""

from __future__ import annotations

from django import forms

from apps.accounts.forms import LabelsField


class InstanceLabelsForm(forms.Form):
    labels = LabelsField(
        help_text="key=value pairs separated by commas, e.g. cost-centre=CC-104. "
        "They override the project's labels with the same key in chargeback."
    )
