"""Why a run's price is not the list price (see MeteredRun.note)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("billing", "0005_reservation_charges")]

    operations = [
        migrations.AddField(
            model_name="meteredrun",
            name="note",
            field=models.CharField(blank=True, default="", max_length=200),
            preserve_default=False,
        ),
    ]
