from django.core.management.base import BaseCommand, CommandError

from apps.capacity.services.nodes import registration_token_create
from apps.catalog.models import Region


class Command(BaseCommand):
    help = "Create a one-time node registration token and print it (only the token, on stdout)."

    def add_arguments(self, parser):
        parser.add_argument("--region", help="region code; default: the first active region")
        parser.add_argument("--note", default="")
        parser.add_argument("--ttl-hours", type=int, default=24)

    def handle(self, *args, region=None, note="", ttl_hours=24, **options):
        regions = Region.objects.filter(is_active=True)
        chosen = regions.filter(code=region).first() if region else regions.order_by("code").first()
        if chosen is None:
            raise CommandError(f"no active region {region or ''}; load the catalog first (manage.py demo_load)")
        _, token = registration_token_create(region=chosen, actor=None, note=note, ttl_hours=ttl_hours)
        self.stdout.write(token)
