"""An SSH instance's public key lines, copied at launch (see Instance.ssh_authorized_keys)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("instances", "0005_runtime_ssh_endpoint")]

    operations = [
        migrations.AddField(
            model_name="instance", name="ssh_authorized_keys", field=models.JSONField(blank=True, default=list)
        ),
    ]
