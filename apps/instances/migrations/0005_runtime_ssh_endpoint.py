"""Where an SSH workload (gpu_slice) is reached: the endpoint its agent reports (nullable, so
notebooks and existing rows need no data)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("instances", "0004_queued_state")]

    operations = [
        migrations.AddField(
            model_name="instanceruntime", name="ssh_host", field=models.GenericIPAddressField(blank=True, null=True)
        ),
        migrations.AddField(
            model_name="instanceruntime", name="ssh_port", field=models.PositiveIntegerField(blank=True, null=True)
        ),
        migrations.AddField(
            model_name="instanceruntime",
            name="ssh_user",
            field=models.CharField(blank=True, max_length=32, null=True),
        ),
        migrations.AddField(
            model_name="instanceruntime",
            name="ssh_host_key",
            field=models.CharField(blank=True, max_length=100, null=True),
        ),
    ]
