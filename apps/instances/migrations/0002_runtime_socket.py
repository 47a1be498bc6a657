"""Notebook servers listen on a Unix socket of their own account and have no token any more
(provisioning/agent/workloads/notebook.py): the runtime keeps the socket, not host/port/token."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("instances", "0001_initial")]

    operations = [
        migrations.RemoveField(model_name="instanceruntime", name="host"),
        migrations.RemoveField(model_name="instanceruntime", name="port"),
        migrations.RemoveField(model_name="instanceruntime", name="token"),
        migrations.AddField(
            model_name="instanceruntime",
            name="socket",
            field=models.CharField(blank=True, max_length=107),
        ),
    ]
