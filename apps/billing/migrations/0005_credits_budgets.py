"""Schema changes for credits, budgets and spend caps. Kept as its own file so that work on each area can add operations
without renumbering the others."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("billing", "0004_metering_invoices")]
    operations: list = []
