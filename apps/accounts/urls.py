from django.urls import path

from .views import api_keys, members, organizations, projects, ssh_keys

app_name = "accounts"

urlpatterns = [
    path("dashboard/", organizations.dashboard, name="dashboard"),
    path("orgs/", organizations.organization_list, name="organization-list"),
    path("orgs/switch/", organizations.organization_switch, name="organization-switch"),
    path("orgs/<slug:slug>/", organizations.organization_detail, name="organization-detail"),
    path("orgs/<slug:slug>/projects/", organizations.project_create_view, name="project-create"),
    path("orgs/<slug:slug>/projects/<int:project_id>/labels/", projects.project_labels_view, name="project-labels"),
    path("orgs/<slug:slug>/members/", members.members_page, name="members"),
    path("orgs/<slug:slug>/members/<int:membership_id>/role/", members.membership_role_view, name="membership-role"),
    path(
        "orgs/<slug:slug>/members/<int:membership_id>/remove/", members.membership_remove_view, name="membership-remove"
    ),
    path(
        "orgs/<slug:slug>/invitations/<int:invitation_id>/revoke/",
        members.invitation_revoke_view,
        name="invitation-revoke",
    ),
    path("orgs/<slug:slug>/api-keys/", api_keys.api_keys_page, name="api-keys"),
    path("orgs/<slug:slug>/api-keys/<int:api_key_id>/revoke/", api_keys.api_key_revoke_view, name="api-key-revoke"),
    path("ssh-keys/", ssh_keys.ssh_keys_page, name="ssh-keys"),
    path("ssh-keys/<int:key_id>/delete/", ssh_keys.ssh_key_delete_view, name="ssh-key-delete"),
    path("invitations/<str:token>/", members.invitation_accept_view, name="invitation-accept"),
]
