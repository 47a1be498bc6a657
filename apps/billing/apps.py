from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "apps.billing"
    label = "billing"
    verbose_name = "Billing: cards, usage, invoices, credits, budgets"

    def ready(self) -> None:
        # Billing is above instances: it follows launches and transitions through the instances
        # app's hooks instead of being imported by it (tests/portal/test_import_layers.py).
        # Imported here, not at the top: models may not be imported before the registry is ready.
        from apps.capacity.hooks import booking_check_subscribe
        from apps.instances.hooks import (
            in_transaction_subscribe,
            instance_costs_provide,
            launch_check_subscribe,
            launch_gate_subscribe,
        )

        from .selectors.costs import instance_run_costs_get
        from .services.eligibility import billing_launch_eligibility_check
        from .services.launch_gate import billing_launch_gate
        from .services.metering import usage_follow_transition

        launch_check_subscribe(billing_launch_eligibility_check)
        # A reservation is billed whole: booking one asks the same as a launch.
        booking_check_subscribe(billing_launch_eligibility_check)
        # The launch page asks the same question first, to link to where it is fixed.
        launch_gate_subscribe(billing_launch_gate)
        # In the transition's transaction: a run must open and close with the state change.
        in_transaction_subscribe(usage_follow_transition)
        # The instance list shows each row's cost so far, for the whole page in one query.
        instance_costs_provide(instance_run_costs_get)
