from django import forms

from apps.catalog.models import Flavor, Image, Region


class LaunchForm(forms.Form):
    flavor = forms.ModelChoiceField(queryset=Flavor.objects.none(), empty_label=None)
    image = forms.ModelChoiceField(queryset=Image.objects.none(), empty_label=None)
    region = forms.ModelChoiceField(
        queryset=Region.objects.filter(is_active=True), empty_label=None, to_field_name="code"
    )
    name = forms.CharField(max_length=63, help_text="Lower-case letters, digits and hyphens.")

    def __init__(self, *args, flavors, images, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["flavor"].queryset = flavors
        self.fields["flavor"].label_from_instance = lambda f: f"{f.offering.name} · {f.name}"
        self.fields["image"].queryset = images
