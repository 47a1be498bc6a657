"""Schema changes for metering and invoices. Kept as its own file so that work on each area can add operations
without renumbering the others."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("billing", "0003_cards_webhooks")]
    operations: list = []
