from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..labels import labels_validate
from ..models import ApiKey, Invitation, Membership, Organization, OrganizationKind, Project, Role, SshKey


class OrganizationSerializer(serializers.ModelSerializer):
    role = serializers.CharField(read_only=True, help_text="Your role in this organization.")

    class Meta:
        model = Organization
        fields = ["slug", "name", "kind", "created_at", "role"]
        read_only_fields = ["slug", "created_at"]


class OrganizationCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    kind = serializers.ChoiceField(choices=[OrganizationKind.COMPANY, OrganizationKind.UNIVERSITY])


class MemberSerializer(serializers.ModelSerializer):
    email = serializers.EmailField(source="user.email", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "email", "role", "created_at"]
        read_only_fields = ["id", "email", "created_at"]


class MemberRoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class InvitationSerializer(serializers.ModelSerializer):
    status = serializers.CharField(source="display_status", read_only=True)

    class Meta:
        model = Invitation
        fields = ["id", "email", "role", "status", "created_at", "expires_at"]
        read_only_fields = ["id", "status", "created_at", "expires_at"]


class InvitationCreateSerializer(serializers.Serializer):
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)


class InvitationAcceptSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=200)


class ApiKeySerializer(serializers.ModelSerializer):
    created_by = serializers.EmailField(source="created_by.email", read_only=True)

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "role",
            "created_by",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "is_active",
        ]
        read_only_fields = fields


class ApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=80)
    role = serializers.ChoiceField(choices=[r for r in Role.values if r != Role.OWNER], default=Role.MEMBER)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class ApiKeyCreatedSerializer(ApiKeySerializer):
    token = serializers.CharField(read_only=True, help_text="Shown once. Store it now.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "token"]
        read_only_fields = fields


class SshKeySerializer(serializers.ModelSerializer):
    type = serializers.CharField(source="key_type", read_only=True, help_text="ssh-ed25519 or ssh-rsa.")

    class Meta:
        model = SshKey
        fields = ["id", "name", "type", "fingerprint", "public_key", "created_at"]
        read_only_fields = fields
        extra_kwargs = {
            "fingerprint": {"help_text": "SHA256, as `ssh-keygen -l` prints it."},
            "public_key": {"help_text": "Normalised: 'type base64 [comment]'."},
        }


class SshKeyCreateSerializer(serializers.Serializer):
    # Checked by apps.accounts.ssh_keys.ssh_key_add, which says what is wrong with each.
    name = serializers.CharField(max_length=80, allow_blank=True, trim_whitespace=False)
    public_key = serializers.CharField(
        max_length=8192, allow_blank=True, trim_whitespace=False,
        help_text="One OpenSSH public key line (a .pub file): ssh-ed25519, or ssh-rsa of at least 2048 bits.",
    )


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": {"type": "string", "maxLength": 63},
        "maxProperties": 16,
        "example": {"cost-centre": "CC-104", "team": "ml"},
    }
)
class LabelsField(serializers.JSONField):
    """key=value labels as a JSON object of strings, checked by the one label rule
    (apps.accounts.labels): a bad key or value is a 400 naming it. The instances' API uses it too."""

    default_error_messages = {"invalid": "Labels are an object of string keys to string values."}

    def __init__(self, **kwargs):
        kwargs.setdefault(
            "help_text", 'key=value labels chargeback groups and filters by, e.g. {"cost-centre": "CC-104"}.'
        )
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        try:
            return labels_validate(data)
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.messages) from error


class ProjectSerializer(serializers.ModelSerializer):
    labels = LabelsField(required=False)

    class Meta:
        model = Project
        fields = ["id", "name", "slug", "labels", "created_at"]
        read_only_fields = ["id", "slug", "created_at"]


class ProjectLabelsSerializer(serializers.Serializer):
    """PATCH of a project: its labels, replaced whole (send {} to clear them)."""

    labels = LabelsField()


class MeSerializer(serializers.Serializer):
    email = serializers.EmailField()
    organizations = OrganizationSerializer(many=True)
