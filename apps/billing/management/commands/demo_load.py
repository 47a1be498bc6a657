"""The whole demo: catalog, users and organizations, then their billing.

It lives in billing, the highest app today, because it composes the demos of the apps below it;
in accounts it made accounts import billing (a circle). When an app above billing (courses,
chargeback) brings a demo of its own, this command moves up to it."""

from django.core.management.base import BaseCommand

from apps.accounts.demo import accounts_demo_load
from apps.catalog.demo import catalog_demo_load

from ...demo import billing_demo_load


class Command(BaseCommand):
    help = "Load the demo users, organizations, catalog and billing credits. Safe to run repeatedly."

    def handle(self, *args, **options):
        catalog_demo_load()
        accounts_demo_load()
        billing_demo_load()  # after the organizations it gives credits to
        self.stdout.write("Demo data is loaded.")
