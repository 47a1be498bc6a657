from django.contrib import admin

from .models import Flavor, GpuModel, Image, Offering, Price, Region


@admin.register(Region)
class RegionAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "country", "is_active"]
    list_filter = ["is_active", "country"]
    search_fields = ["code", "name"]


@admin.register(GpuModel)
class GpuModelAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "memory_gib", "nvml_name"]
    search_fields = ["slug", "name", "nvml_name"]


class FlavorInline(admin.TabularInline):
    model = Flavor
    extra = 0
    fields = [
        "slug", "name", "gpu_model", "gpu_count", "slice_kind", "mig_profile", "gpu_fraction",
        "vcpus", "ram_gib", "disk_gib", "served_model", "sort_order",
    ]
    show_change_link = True


@admin.register(Offering)
class OfferingAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "kind", "is_public", "sort_order"]
    list_filter = ["kind", "is_public"]
    search_fields = ["slug", "name"]
    inlines = [FlavorInline]


class PriceInline(admin.TabularInline):
    model = Price
    extra = 0
    fields = ["region", "unit", "currency", "amount", "valid_from"]
    ordering = ["unit", "region", "-valid_from"]


@admin.register(Flavor)
class FlavorAdmin(admin.ModelAdmin):
    list_display = ["__str__", "name", "gpu_model", "gpu_count", "slice_kind", "vcpus", "ram_gib"]
    list_filter = ["offering__kind", "slice_kind", "gpu_model"]
    list_select_related = ["offering", "gpu_model"]
    search_fields = ["slug", "name", "offering__slug", "served_model"]
    inlines = [PriceInline]


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "offering_kinds"]
    search_fields = ["slug", "name"]


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    list_display = ["flavor", "region", "unit", "amount", "currency", "valid_from"]
    list_filter = ["unit", "currency", "region", "flavor__offering__kind"]
    list_select_related = ["flavor__offering", "region"]
    search_fields = ["flavor__slug", "flavor__offering__slug"]
    date_hierarchy = "valid_from"
