"""REST API v1 for organizations, members, invitations, API keys, projects and the user's SSH keys.
Thin: every write goes through apps.accounts.services (SSH keys: apps.accounts.ssh_keys), every read
through apps.accounts.selectors."""

from django.db.models import CharField, F, Value
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.api import PortalApiMixin

from .. import selectors, services, ssh_keys
from ..models import ApiKey, Invitation, Membership, Organization, Project, SshKey
from .access import OrganizationScopedMixin, request_api_key
from .serializers import (
    ApiKeyCreatedSerializer,
    ApiKeyCreateSerializer,
    ApiKeySerializer,
    InvitationAcceptSerializer,
    InvitationCreateSerializer,
    InvitationSerializer,
    MemberRoleSerializer,
    MemberSerializer,
    MeSerializer,
    OrganizationCreateSerializer,
    OrganizationSerializer,
    ProjectLabelsSerializer,
    ProjectSerializer,
    SshKeyCreateSerializer,
    SshKeySerializer,
)


def _organizations_with_role(request):
    api_key = request_api_key(request)
    if api_key is not None:
        return Organization.objects.filter(pk=api_key.organization_id).annotate(
            role=Value(api_key.role, output_field=CharField())
        )
    return selectors.organizations_for_user(user=request.user).annotate(role=F("memberships__role"))


class MeView(PortalApiMixin, APIView):
    @extend_schema(responses=MeSerializer)
    def get(self, request):
        data = {"email": request.user.email, "organizations": _organizations_with_role(request)}
        return Response(MeSerializer(data).data)


class OrganizationViewSet(PortalApiMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = OrganizationSerializer
    queryset = Organization.objects.none()  # names the model for the schema; rows come from get_queryset
    lookup_field = "slug"
    lookup_value_converter = "slug"

    def get_queryset(self):
        return _organizations_with_role(self.request)

    @extend_schema(request=OrganizationCreateSerializer, responses={201: OrganizationSerializer})
    def create(self, request):
        if request_api_key(request) is not None:
            raise PermissionDenied("API keys act inside one organization and cannot create others.")
        payload = OrganizationCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        organization = services.organization_create(user=request.user, **payload.validated_data)
        organization.role = "owner"
        return Response(OrganizationSerializer(organization).data, status=status.HTTP_201_CREATED)


class MemberViewSet(OrganizationScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = MemberSerializer
    queryset = Membership.objects.none()  # names the model for the schema; rows come from get_queryset
    lookup_value_converter = "int"

    def get_queryset(self):
        return selectors.members_list(organization=self.access.organization)

    @extend_schema(request=MemberRoleSerializer, responses=MemberSerializer)
    def partial_update(self, request, org_slug, pk):
        payload = MemberRoleSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        membership = selectors.membership_get(organization=self.access.organization, membership_id=pk)
        membership = services.membership_role_change(
            access=self.access, membership=membership, role=payload.validated_data["role"]
        )
        return Response(MemberSerializer(membership).data)

    def destroy(self, request, org_slug, pk):
        membership = selectors.membership_get(organization=self.access.organization, membership_id=pk)
        services.membership_remove(access=self.access, membership=membership)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationViewSet(
    OrganizationScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    serializer_class = InvitationSerializer
    queryset = Invitation.objects.none()  # names the model for the schema; rows come from get_queryset
    lookup_value_converter = "int"

    def get_queryset(self):
        return selectors.invitations_list(organization=self.access.organization)

    @extend_schema(request=InvitationCreateSerializer, responses={201: InvitationSerializer})
    def create(self, request, org_slug):
        payload = InvitationCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        invitation = services.invitation_create(access=self.access, **payload.validated_data)
        return Response(InvitationSerializer(invitation).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=InvitationSerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request, org_slug, pk):
        invitation = selectors.invitation_get(organization=self.access.organization, invitation_id=pk)
        invitation = services.invitation_revoke(access=self.access, invitation=invitation)
        return Response(InvitationSerializer(invitation).data)


class InvitationAcceptView(PortalApiMixin, APIView):
    @extend_schema(request=InvitationAcceptSerializer, responses=MemberSerializer)
    def post(self, request):
        if request_api_key(request) is not None:
            raise PermissionDenied("Invitations are accepted by a person, not an API key.")
        payload = InvitationAcceptSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        membership = services.invitation_accept(token=payload.validated_data["token"], user=request.user)
        return Response(MemberSerializer(membership).data)


class ApiKeyViewSet(OrganizationScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = ApiKeySerializer
    queryset = ApiKey.objects.none()  # names the model for the schema; rows come from get_queryset
    lookup_value_converter = "int"

    def get_queryset(self):
        if not self.access.can_manage_api_keys:
            raise PermissionDenied("Only owners and admins see the organization's API keys.")
        return selectors.api_keys_list(organization=self.access.organization)

    @extend_schema(request=ApiKeyCreateSerializer, responses={201: ApiKeyCreatedSerializer})
    def create(self, request, org_slug):
        payload = ApiKeyCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        api_key, token = services.api_key_create(access=self.access, **payload.validated_data)
        api_key.token = token
        return Response(ApiKeyCreatedSerializer(api_key).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=ApiKeySerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request, org_slug, pk):
        api_key = selectors.api_key_get(organization=self.access.organization, api_key_id=pk)
        return Response(ApiKeySerializer(services.api_key_revoke(access=self.access, api_key=api_key)).data)


class ProjectViewSet(OrganizationScopedMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = ProjectSerializer
    queryset = Project.objects.none()  # names the model for the schema; rows come from get_queryset
    lookup_value_converter = "int"

    def get_queryset(self):
        return selectors.projects_list(organization=self.access.organization)

    @extend_schema(request=ProjectSerializer, responses={201: ProjectSerializer})
    def create(self, request, org_slug):
        payload = ProjectSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        project = services.project_create(
            access=self.access,
            name=payload.validated_data["name"],
            labels=payload.validated_data.get("labels"),
        )
        return Response(ProjectSerializer(project).data, status=status.HTTP_201_CREATED)

    def retrieve(self, request, org_slug, pk):
        project = selectors.project_get(organization=self.access.organization, project_id=pk)
        return Response(ProjectSerializer(project).data)

    @extend_schema(request=ProjectLabelsSerializer, responses=ProjectSerializer)
    def partial_update(self, request, org_slug, pk):
        project = selectors.project_get(organization=self.access.organization, project_id=pk)
        payload = ProjectLabelsSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        project = services.project_labels_set(
            access=self.access, project=project, labels=payload.validated_data["labels"]
        )
        return Response(ProjectSerializer(project).data)


class SshKeyViewSet(
    PortalApiMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """The signed-in person's SSH public keys.

    SSH keys belong to a person, not to an organization, and an organization API key acts for its
    organization (request.user is its creator only for audit): like creating an organization or
    accepting an invitation, managing a person's keys, which grant shell access to what they
    launch, takes the person's own session, so an API key gets 403 here.
    """

    serializer_class = SshKeySerializer
    queryset = SshKey.objects.none()  # names the model for the schema; rows come from get_queryset
    lookup_value_converter = "int"

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request_api_key(request) is not None:
            raise PermissionDenied(
                "SSH keys belong to a person: sign in to manage them. An organization API key cannot."
            )

    def get_queryset(self):
        return selectors.ssh_keys_list(user=self.request.user)

    def get_object(self):
        return selectors.ssh_key_get(user=self.request.user, key_id=self.kwargs["pk"])

    @extend_schema(request=SshKeyCreateSerializer, responses={201: SshKeySerializer})
    def create(self, request):
        payload = SshKeyCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        key = ssh_keys.ssh_key_add(user=request.user, **payload.validated_data)
        return Response(SshKeySerializer(key).data, status=status.HTTP_201_CREATED)

    def destroy(self, request, pk):
        ssh_keys.ssh_key_delete(user=request.user, key_id=pk)
        return Response(status=status.HTTP_204_NO_CONTENT)
