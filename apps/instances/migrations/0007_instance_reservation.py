"""The reservation an instance was launched into (see Instance.reservation)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("instances", "0006_instance_ssh_authorized_keys"), ("capacity", "0010_reservations")]

    operations = [
        migrations.AddField(
            model_name="instance",
            name="reservation",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="capacity.reservation",
            ),
        ),
    ]
