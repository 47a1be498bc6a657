"""The launch form: it offers only what this cloud can run (apps.instances.launch_options),
preselects a region with free capacity for the chosen flavor, and says why a choice is off
("sold out in eu-north-1"). Sold-out choices are disabled unless the launch may wait in the
queue (static/js/launch-form.js turns them back on when that box is ticked). A flavor whose kind
is logged in to over SSH (its driver's needs_ssh_keys) adds a picker of the user's own keys.
When the organization has active reservations of the flavor's GPU model, "Run on" offers them
beside on-demand capacity; one chosen fixes the region, and the launch runs on its GPUs."""

from __future__ import annotations

from django import forms

from apps.accounts.models import SshKey
from apps.capacity.selectors.reservations import LaunchableReservation
from apps.capacity.services.reservations import when
from apps.catalog.models import Flavor, Image, Region

from .launch_options import FlavorChoice, LaunchOptions


class ChoiceAttrsSelect(forms.Select):
    """A select whose options carry attributes of their own (disabled, data-…), by value."""

    def __init__(self, *args, option_attrs: dict[str, dict] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.option_attrs = option_attrs or {}

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        option["attrs"].update(self.option_attrs.get(str(value), {}))
        return option


def _reservation_label(choice: LaunchableReservation) -> str:
    r = choice.reservation
    free = f"{choice.gpus_free} GPU{'s' if choice.gpus_free != 1 else ''} free"
    return f"Reservation of {choice.gpus} × {r.gpu_model.name} in {r.region.code} until {when(r.ends_at)} · {free}"


def _per_hour(price) -> str:
    return f"{price.display.split(' / ')[0]}/h" if price is not None else "not priced"


class LaunchForm(forms.Form):
    flavor = forms.ModelChoiceField(queryset=Flavor.objects.none(), empty_label=None)
    region = forms.ModelChoiceField(queryset=Region.objects.none(), empty_label=None, to_field_name="code")
    image = forms.ModelChoiceField(queryset=Image.objects.none(), empty_label=None)
    name = forms.CharField(max_length=63, help_text="Lower-case letters, digits and hyphens.")
    # Any id is accepted here: one that ended or filled since the page was drawn gets the launch
    # service's reason (the `reservation` error), as the API does; the choices are only the offer.
    reservation = forms.UUIDField(required=False, label="Run on")
    queue = forms.BooleanField(required=False, label="Wait in the queue if no capacity is free")
    # Required only for a flavor that needs keys (clean); the queryset is the user's own keys, so a
    # tampered POST with someone else's key id is an invalid choice, never a launch.
    ssh_keys = forms.ModelMultipleChoiceField(
        queryset=SshKey.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="SSH keys",
        help_text="The keys that may log in to it; they are copied onto the instance at launch.",
        error_messages={
            "invalid_choice": "Choose only your own SSH keys.",
            "invalid_pk_value": "Choose only your own SSH keys.",
        },
    )

    NO_KEYS = "You have no SSH keys yet. Add one on your SSH keys page, then launch."
    NO_KEY_CHOSEN = "Choose at least one of your SSH keys to log in with."

    def __init__(
        self,
        *args,
        options: LaunchOptions,
        chosen: FlavorChoice | None,
        ssh_keys: list[SshKey] | None = None,
        reservations: list[LaunchableReservation] | None = None,
        refresh_url: str = "",
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.options, self.chosen = options, chosen
        self.user_ssh_keys = list(ssh_keys or [])
        self.reservations = list(reservations or [])
        self.chosen_reservation = self._reservation_asked()
        waiting = self._wants_queue()
        flavor_attrs, region_attrs = {}, {}
        for choice in options.flavors:
            flavor_attrs[str(choice.flavor.pk)] = self._attrs(choice.disabled_reason, waiting)
        # On a reservation, on-demand capacity does not matter: its region is the only choice.
        for region in chosen.regions if chosen and not self.chosen_reservation else []:
            region_attrs[region.region.code] = self._attrs(region.disabled_reason, waiting)
        # The widget first: setting the queryset hands the choices to the widget in place.
        flavor = self.fields["flavor"]
        # A new flavor re-renders the region choices for it (partials/launch_form.html).
        refresh = (
            {
                "hx-get": refresh_url,
                "hx-trigger": "change",
                "hx-target": "#launch-region-choices",
                "hx-select": "#launch-region-choices",
                "hx-swap": "outerHTML",
                "hx-include": "closest form",
            }
            if refresh_url
            else {}
        )
        flavor.widget = ChoiceAttrsSelect(option_attrs=flavor_attrs, attrs=refresh)
        flavor.label_from_instance = self._flavor_label
        # In the catalog's order, offering by offering (not the flavors' own order across offerings).
        flavor.queryset = (
            Flavor.objects.filter(pk__in=[c.flavor.pk for c in options.flavors])
            .select_related("offering", "gpu_model")
            .order_by("offering__sort_order", "sort_order", "id")
        )
        region = self.fields["region"]
        region.widget = ChoiceAttrsSelect(option_attrs=region_attrs)
        region.label_from_instance = self._region_label
        region_ids = [r.pk for r in options.regions]
        if self.chosen_reservation:
            region_ids = [self.chosen_reservation.reservation.region_id]
        region.queryset = Region.objects.filter(pk__in=region_ids)
        self._reservation_field_set(refresh)
        # Only the images that run the chosen flavor's kind (re-rendered with the region choices).
        self.fields["image"].queryset = Image.objects.filter(pk__in=[i.pk for i in options.images_for(chosen)])
        keys = self.fields["ssh_keys"]
        keys.queryset = SshKey.objects.filter(pk__in=[k.pk for k in self.user_ssh_keys])
        keys.label_from_instance = lambda key: f"{key.name} · {key.fingerprint}"

    def _reservation_asked(self) -> LaunchableReservation | None:
        """The offered reservation the form's value names (posted, or initial), if any."""
        if self.is_bound:
            value = self.data.get(self.add_prefix("reservation"))
        else:
            value = self.initial.get("reservation")
        return next((c for c in self.reservations if str(c.reservation.pk) == str(value or "")), None)

    def _reservation_field_set(self, refresh: dict) -> None:
        field = self.fields["reservation"]
        choices = [("", "On-demand capacity")] + [
            (str(c.reservation.pk), _reservation_label(c)) for c in self.reservations
        ]
        # A full one stays listed, off, with why (the launch would be refused for the same reason).
        attrs = {
            str(c.reservation.pk): {"data-reason": "full", "disabled": True}
            for c in self.reservations
            if self.chosen and c.gpus_free < self.chosen.flavor.gpu_count
        }
        # A reservation fixes the region: choosing one (or on-demand again) redraws the region choices.
        field.widget = ChoiceAttrsSelect(choices=choices, option_attrs=attrs, attrs=refresh)
        field.help_text = "On a reservation the instance runs on GPUs it holds, at no extra charge."

    @property
    def shows_reservations(self) -> bool:
        # Also when a posted one is gone from the offer: its error must be seen.
        return bool(self.reservations or self.errors.get("reservation"))

    @property
    def needs_ssh_keys(self) -> bool:
        return bool(self.chosen and self.chosen.needs_ssh_keys)

    def _wants_queue(self) -> bool:
        if self.is_bound:
            return self.data.get(self.add_prefix("queue")) in ("on", "true", "1", "True")
        return bool(self.initial.get("queue"))

    @staticmethod
    def _attrs(reason: str | None, waiting: bool) -> dict:
        if reason is None:
            return {}
        attrs = {"data-reason": reason}
        if reason.startswith("sold out"):
            # A sold-out choice may still be waited for in the queue.
            attrs["data-sold-out"] = "1"
            if waiting:
                return attrs
        attrs["disabled"] = True
        return attrs

    def _flavor_label(self, flavor: Flavor) -> str:
        choice = self.options.flavor(flavor.pk)
        label = f"{flavor.offering.name} · {flavor.name}"
        if choice is None:
            return label
        if choice.disabled_reason:
            return f"{label} — {choice.disabled_reason}"
        return f"{label} — from {_per_hour(choice.list_price)} · {choice.available} free"

    def _region_label(self, region: Region) -> str:
        label = f"{region.name} · {region.code}"
        if self.chosen_reservation:
            return f"{label} — the reservation's region"
        choice = self.chosen.region(region.code) if self.chosen else None
        if choice is None:
            return label
        if choice.disabled_reason:
            return f"{label} — {choice.disabled_reason}"
        return f"{label} — {choice.available} free · {_per_hour(choice.hourly)}"

    def clean(self):
        data = super().clean()
        flavor, region = data.get("flavor"), data.get("region")
        image = data.get("image")
        if flavor and image and not image.applies_to(flavor.offering.kind):
            self.add_error("image", f"{image.name} cannot run on {flavor.offering.name}.")
        choice = self.options.flavor(flavor.pk) if flavor else None
        if choice is not None and choice.needs_ssh_keys and "ssh_keys" not in self.errors:
            if not self.user_ssh_keys:
                self.add_error("ssh_keys", self.NO_KEYS)
            elif not data.get("ssh_keys"):
                self.add_error("ssh_keys", self.NO_KEY_CHOSEN)
        reservation = data.get("reservation")
        if reservation is not None:
            # Its region, whatever was posted; an id no longer offered goes to the launch, which says why.
            offered = next((c for c in self.reservations if c.reservation.pk == reservation), None)
            if offered is not None:
                data["region"] = offered.reservation.region
                self.errors.pop("region", None)
            return data
        where = choice.region(region.code) if choice and region else None
        if where is not None and where.disabled_reason:
            if where.hourly is None:
                self.add_error("region", f"{flavor.name} is not priced in {region.code}.")
            elif not data.get("queue"):
                self.add_error(
                    "region",
                    f"Sold out in {region.code}. Choose a region with free capacity, or tick “Wait in the queue”.",
                )
        return data

    def launch_arguments(self) -> dict:
        """The cleaned data as instance_launch takes it: key ids, and only for a kind that needs them."""
        data = dict(self.cleaned_data)
        keys = data.pop("ssh_keys", None) or []
        choice = self.options.flavor(data["flavor"].pk)
        data["ssh_keys"] = [key.pk for key in keys] if choice and choice.needs_ssh_keys else []
        return data
