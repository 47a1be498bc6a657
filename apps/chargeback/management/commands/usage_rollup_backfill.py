from django.core.management.base import BaseCommand

from apps.chargeback.services.rollup import usage_rollup_reset, usage_rollup_run


class Command(BaseCommand):
    help = (
        "Rebuild the chargeback roll-ups from scratch: zero them, move the cursors back and fold every "
        "usage record and reservation charge again. Used GPU-seconds already folded are kept (telemetry "
        "is pruned after PORTAL_TELEMETRY_RETENTION_DAYS); --telemetry drops them and refolds what is kept."
    )

    def add_arguments(self, parser):
        parser.add_argument("--telemetry", action="store_true", help="also drop and refold GPU telemetry")

    def handle(self, *args, telemetry=False, **options):
        usage_rollup_reset(telemetry=telemetry)
        result = usage_rollup_run()
        self.stdout.write(
            f"folded {result.records} usage records, {result.charges} reservation charges, "
            f"{result.samples} GPU-minutes{' (another run was folding: run again)' if result.busy else ''}"
        )
