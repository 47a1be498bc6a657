"""Invoices: a line's kind (usage or credit), one monthly invoice per account and month, total =
subtotal - credits as a database check, and the invoice number sequence."""

from django.db import migrations, models

# Invoice numbers (INV-2026-11-000123) come from one PostgreSQL sequence: unique and increasing
# across every worker without a table lock; a rolled-back invoice leaves a gap, as accountants expect.
SEQUENCE_FORWARD = "CREATE SEQUENCE IF NOT EXISTS billing_invoice_number_seq START 1"
SEQUENCE_BACKWARD = "DROP SEQUENCE IF EXISTS billing_invoice_number_seq"


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_usage_records_immutable")]
    operations: list = [
        migrations.AddField(
            model_name="invoiceline",
            name="kind",
            field=models.CharField(
                choices=[("usage", "Usage"), ("credit", "Credits applied")], default="usage", max_length=16
            ),
        ),
        migrations.AddConstraint(
            model_name="invoice",
            constraint=models.UniqueConstraint(
                condition=models.Q(("kind", "monthly")),
                fields=("account", "period_start"),
                name="invoice_one_monthly_per_account_period",
            ),
        ),
        migrations.AddConstraint(
            model_name="invoice",
            constraint=models.CheckConstraint(
                condition=models.Q(("total", models.F("subtotal") - models.F("credits_applied"))),
                name="invoice_total_is_subtotal_less_credits",
            ),
        ),
        migrations.RunSQL(SEQUENCE_FORWARD, SEQUENCE_BACKWARD),
    ]
