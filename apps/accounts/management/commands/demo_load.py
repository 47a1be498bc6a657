from django.core.management.base import BaseCommand

from apps.accounts.demo import accounts_demo_load
from apps.billing.demo import billing_demo_load
from apps.catalog.demo import catalog_demo_load


class Command(BaseCommand):
    help = "Load the demo users, organizations, catalog and billing credits. Safe to run repeatedly."

    def handle(self, *args, **options):
        catalog_demo_load()
        accounts_demo_load()
        billing_demo_load()  # after the organizations it gives credits to
        self.stdout.write("Demo data is loaded.")
