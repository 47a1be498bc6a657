"""The chargeback pages' GET forms. They only draw the inputs and carry the errors: the query
string is read by the selectors' parser (selectors.params, the one the API uses too), so a page
and the API take the same parameters and refuse the same mistakes with the same reasons. Every
field is free text here; whatever the parser refuses comes back as an error on its field."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta

from django import forms
from django.core.exceptions import ValidationError
from django.http import QueryDict

from apps.chargeback.selectors.report import DIMENSIONS, ChargebackQuery, dimension_title

LABEL_PREFIX = "label:"


def dimension_choices(label_keys: Iterable[str] = ()) -> list[tuple[str, str]]:
    fixed = [(name, dimension_title(name)) for name in DIMENSIONS]
    return [*fixed, *[(f"{LABEL_PREFIX}{key}", f"Label {key}") for key in sorted(set(label_keys))]]


class GroupByWidget(forms.MultiWidget):
    """Two selects both named `group_by` (the parser takes it repeated): the first dimension and
    the second. An empty second select sends an empty value, which the parser skips."""

    def __init__(self, choices=()):
        first = forms.Select(attrs={"aria-label": "Group by", "data-testid": "group-by-1"})
        second = forms.Select(attrs={"aria-label": "then by", "data-testid": "group-by-2"})
        super().__init__([first, second])
        self.widgets_names = ["", ""]
        self.choices_set(choices)

    def choices_set(self, choices) -> None:
        self.widgets[0].choices = [("", "Nothing (one total)"), *choices]
        self.widgets[1].choices = [("", "—"), *choices]

    def decompress(self, value):
        values = list(value or [])[:2]
        return values + [""] * (2 - len(values))

    def value_from_datadict(self, data, files, name):
        values = data.getlist(name) if hasattr(data, "getlist") else [data.get(name, "")]
        names = [n.strip() for v in values for n in str(v).split(",") if n.strip()]
        return names


class GroupByField(forms.Field):
    widget = GroupByWidget

    def to_python(self, value):
        return list(value or [])


def _params_bind(params: Mapping, defaults: dict[str, str]) -> QueryDict:
    data = QueryDict(mutable=True)
    if hasattr(params, "lists"):
        for key, values in params.lists():
            data.setlist(key, values)
    else:
        for key, value in params.items():
            data[key] = value
    for key, value in defaults.items():
        if not data.get(key):
            data[key] = value
    return data


class ParamsForm(forms.Form):
    """A form over the page's query string whose errors come from the parser's ValidationError
    ({parameter: [reasons]}); a parameter without a field of its own shows above the form."""

    start = forms.CharField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.CharField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, params: Mapping, *, defaults: dict[str, str] | None = None, **kwargs):
        super().__init__(_params_bind(params, defaults or {}), **kwargs)

    def errors_add(self, error: ValidationError) -> None:
        self.is_valid()
        messages = error.message_dict if hasattr(error, "error_dict") else {None: error.messages}
        for name, reasons in messages.items():
            for reason in reasons:
                self.add_error(name if name in self.fields else None, reason)

    @staticmethod
    def range_defaults(query: ChargebackQuery | None) -> dict[str, str]:
        """The range the parser chose (this month so far) written into the date inputs."""
        if query is None:
            return {}
        return {"start": query.start.isoformat(), "end": (query.end - timedelta(days=1)).isoformat()}


class ChargebackForm(ParamsForm):
    group_by = GroupByField(label="Group by", required=False)
    label = forms.CharField(
        label="Labels",
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "cost-centre=CC-104", "data-testid": "label-filter"}),
        help_text="key=value; several, comma-separated, must all match",
    )
    # Drill-down: set by the table's links (a project's slug, a user's id, an instance's id) and
    # kept by the form, so changing the range or the grouping stays inside the narrowed group.
    project = forms.CharField(required=False, widget=forms.HiddenInput)
    owner = forms.CharField(required=False, widget=forms.HiddenInput)
    instance = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, params: Mapping, *, label_keys: Iterable[str] = (), **kwargs):
        super().__init__(params, **kwargs)
        keys = set(label_keys)
        # A label dimension named in the query (a link, a bookmark) stays choosable.
        for name in self.data.getlist("group_by"):
            for part in name.split(","):
                if part.strip().startswith(LABEL_PREFIX):
                    keys.add(part.strip()[len(LABEL_PREFIX) :])
        self.fields["group_by"].widget.choices_set(dimension_choices(keys))
        # Several ?label= parameters show as one comma-separated text.
        labels = [v for v in self.data.getlist("label") if v.strip()]
        if len(labels) > 1:
            self.data.setlist("label", [", ".join(labels)])


class IdleForm(ParamsForm):
    below_pct = forms.CharField(
        label="Utilisation below (%)",
        required=False,
        widget=forms.NumberInput(attrs={"min": 0, "max": 100, "step": "any"}),
    )
    min_hours = forms.CharField(
        label="Held at least (GPU-hours)", required=False, widget=forms.NumberInput(attrs={"min": 0, "step": "any"})
    )
