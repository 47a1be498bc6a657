"""`{% instance_queue_position instance as queue %}`: a queued instance's place in line, for the
live detail partial (partials/queue_position.html), computed on every render and push."""

from django import template

from ..queue_position import QueuePosition
from ..queue_position import instance_queue_position as position_get

register = template.Library()


@register.simple_tag
def instance_queue_position(instance) -> QueuePosition | None:
    return position_get(instance=instance)
