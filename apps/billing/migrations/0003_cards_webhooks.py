"""Schema changes for cards, customers, webhooks, dunning (Stripe side). Kept as its own file so that work on each area can add operations
without renumbering the others."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_usage_records_immutable")]
    operations: list = []
