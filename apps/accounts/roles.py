"""What each role may do. One table, so a reviewer can read the whole policy at once."""

from __future__ import annotations

from dataclasses import dataclass

from .models import Organization, Role

# Higher rank may assign roles of equal or lower rank; owner is the only role that grants owner.
_RANK = {Role.VIEWER: 0, Role.BILLING: 1, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}

CAN_MANAGE_MEMBERS = {Role.OWNER, Role.ADMIN}
CAN_MANAGE_API_KEYS = {Role.OWNER, Role.ADMIN}
CAN_MANAGE_PROJECTS = {Role.OWNER, Role.ADMIN}
CAN_VIEW_BILLING = {Role.OWNER, Role.ADMIN, Role.BILLING}
CAN_LAUNCH = {Role.OWNER, Role.ADMIN, Role.MEMBER}


@dataclass(frozen=True)
class OrgAccess:
    """The caller's standing in one organization: through a membership or an API key."""

    organization: Organization
    role: str
    user_id: int
    api_key_id: int | None = None

    @property
    def can_manage_members(self) -> bool:
        return self.role in CAN_MANAGE_MEMBERS

    @property
    def can_manage_api_keys(self) -> bool:
        return self.role in CAN_MANAGE_API_KEYS

    @property
    def can_manage_projects(self) -> bool:
        return self.role in CAN_MANAGE_PROJECTS

    @property
    def can_view_billing(self) -> bool:
        return self.role in CAN_VIEW_BILLING

    @property
    def can_launch(self) -> bool:
        return self.role in CAN_LAUNCH

    def can_assign(self, role: str) -> bool:
        if role == Role.OWNER:
            return self.role == Role.OWNER
        return self.can_manage_members and _RANK[Role(self.role)] >= _RANK[Role(role)]
