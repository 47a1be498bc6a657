from django.apps import AppConfig


class CapacityConfig(AppConfig):
    name = "apps.capacity"
    label = "capacity"
    verbose_name = "Capacity: nodes, GPUs, allocations, quotas"

    def ready(self) -> None:
        # The storefront (catalog) shows how many of each flavor could launch now; capacity is
        # above the catalog, so it hands the catalog its count instead of being imported by it.
        # Imported here, not at the top: models may not be imported before the registry is ready.
        from apps.catalog.selectors import availability_provider_set

        from .selectors.availability import flavor_availability

        availability_provider_set(flavor_availability)
