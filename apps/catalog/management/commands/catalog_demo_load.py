from django.core.management.base import BaseCommand

from apps.catalog.demo import catalog_demo_load
from apps.catalog.models import Flavor, Offering, Price


class Command(BaseCommand):
    help = "Load (or refresh) the demo catalog: regions, GPU models, offerings, flavors, prices."

    def handle(self, *args, **options):
        catalog_demo_load()
        self.stdout.write(
            f"Demo catalog loaded: {Offering.objects.count()} offerings, "
            f"{Flavor.objects.count()} flavors, {Price.objects.count()} prices."
        )
