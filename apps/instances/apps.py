from django.apps import AppConfig


class InstancesConfig(AppConfig):
    name = "apps.instances"
    label = "instances"
    verbose_name = "Instances: what customers launched"

    def ready(self) -> None:
        # Registering the driver is what makes notebook offerings launchable in the catalog.
        from apps.capacity.hooks import reservation_end_subscribe
        from provisioning.drivers.agent_bare_metal import AGENT_BARE_METAL_DRIVER
        from provisioning.drivers.agent_notebook import AGENT_NOTEBOOK_DRIVER
        from provisioning.drivers.agent_ssh import AGENT_SSH_DRIVER
        from provisioning.drivers.registry import driver_register

        from .hooks import in_transaction_subscribe
        from .services.desired import desired_follow_transition
        from .services.reservation_end import reservation_instances_stop

        driver_register(AGENT_NOTEBOOK_DRIVER)
        driver_register(AGENT_SSH_DRIVER)  # gpu_slice offerings: GPU instances over SSH
        driver_register(AGENT_BARE_METAL_DRIVER)  # bare_metal offerings: whole nodes over SSH
        # A node's desired-state version goes up in the transaction that changes its list.
        in_transaction_subscribe(desired_follow_transition)
        # A reservation's window ends: what runs on its GPUs is stopped before they are given back.
        reservation_end_subscribe(reservation_instances_stop)
