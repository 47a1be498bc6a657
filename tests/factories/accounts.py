from decimal import Decimal

import factory
from allauth.account.models import EmailAddress

from apps.accounts.models import Membership, Organization, OrganizationKind, Project, Role, User

PASSWORD = "correct-horse-battery-9"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.test")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def verified(obj, create, extracted, **kwargs):
        if create:
            obj.save()
            EmailAddress.objects.create(user=obj, email=obj.email, verified=True, primary=True)


class OrganizationFactory(factory.django.DjangoModelFactory):
    """An organization with `owner` (a user) as its owner member."""

    class Meta:
        model = Organization
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Org {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")
    kind = OrganizationKind.COMPANY

    @factory.post_generation
    def owner(obj, create, extracted, **kwargs):
        if create and extracted is not None:
            Membership.objects.create(organization=obj, user=extracted, role=Role.OWNER)

    @factory.post_generation
    def default_project(obj, create, extracted, **kwargs):
        # As organization_create does: every organization starts with a Default project.
        if create:
            Project.objects.create(organization=obj, name="Default", slug="default")

    @factory.post_generation
    def credits(obj, create, extracted, **kwargs):
        """`credits=Decimal("100.00")`: a promotional grant, as a new customer gets, so the
        organization may launch without a card. Without it the organization has no way to pay."""
        if create and extracted:
            from apps.billing.services.accounts import billing_account_get_or_create
            from apps.billing.services.credits import credit_grant_create

            credit_grant_create(
                account=billing_account_get_or_create(organization=obj),
                kind="promotion",
                amount=Decimal(extracted),
                description="Test credit",
            )


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    organization = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.MEMBER
