"""The labels block of an instance's page: its form (a fresh one, or the one a bad POST left
with its errors and what was typed) and whether the viewer may change them."""

from __future__ import annotations

from django import template

from ..forms_labels import InstanceLabelsForm
from ..services.labels import instance_labels_may_set

register = template.Library()


@register.simple_tag
def instance_labels_form(instance, bound=None) -> InstanceLabelsForm:
    return bound if bound is not None else InstanceLabelsForm(initial={"labels": instance.labels})


@register.simple_tag
def instance_labels_editable(access, instance) -> bool:
    return instance_labels_may_set(access=access, instance=instance)
