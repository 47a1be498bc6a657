"""Background work of the accounts app."""

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse

from .services import invitation_token_issue


@shared_task(autoretry_for=(ConnectionError, TimeoutError, OSError), retry_backoff=True, max_retries=5)
def invitation_email_send(invitation_id: int) -> bool:
    issued = invitation_token_issue(invitation_id=invitation_id)
    if issued is None:
        return False  # accepted, withdrawn or expired since it was queued: nothing to send
    invitation, token = issued
    context = {
        "invitation": invitation,
        "accept_url": settings.PORTAL_BASE_URL.rstrip("/") + reverse("accounts:invitation-accept", args=[token]),
    }
    send_mail(
        subject=f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}You are invited to {invitation.organization.name}",
        message=render_to_string("accounts/email/invitation.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[invitation.email],
    )
    return True
