import pytest


@pytest.fixture
def eager_tasks():
    """Celery tasks run in this process when queued (here: the alert mails), so a test can count
    the mail that went out. Their path through a real worker is in test_spend_cap_integration."""
    from portal.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks):
    """Call a service as its own transaction would: on-commit work (queued mail) runs after it."""

    def _run(function, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return function(**kwargs)

    return _run
