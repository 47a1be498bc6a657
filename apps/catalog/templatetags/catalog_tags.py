from django import template

register = template.Library()


@register.filter
def gib(value: int | None) -> str:
    """Sizes in GiB as people read them: `240 GiB`, `2 TiB`; zero or none as a dash."""
    if not value:
        return "—"
    if value >= 1024 and value % 1024 == 0:
        return f"{value // 1024:,} TiB"
    return f"{value:,} GiB"
