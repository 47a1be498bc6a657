"""A launch may wait for capacity: the QUEUED lifecycle state (choices only; no data changes)."""

from django.db import migrations, models

STATES = [
    ("queued", "Queued"),
    ("requested", "Requested"),
    ("scheduled", "Scheduled"),
    ("provisioning", "Starting"),
    ("running", "Running"),
    ("stopping", "Stopping"),
    ("stopped", "Stopped"),
    ("failed", "Failed"),
    ("lost", "Lost"),
    ("terminated", "Deleted"),
]


class Migration(migrations.Migration):
    dependencies = [("instances", "0003_node_workloads_version")]

    operations = [
        migrations.AlterField(
            model_name="instance",
            name="state",
            field=models.CharField(choices=STATES, default="requested", max_length=16),
        ),
        migrations.AlterField(
            model_name="instanceevent",
            name="from_state",
            field=models.CharField(blank=True, choices=STATES, max_length=16),
        ),
        migrations.AlterField(
            model_name="instanceevent",
            name="to_state",
            field=models.CharField(blank=True, choices=STATES, max_length=16),
        ),
    ]
