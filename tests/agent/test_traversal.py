"""Search permission above a workload root: added while a workload root needs it, and given
back when the last agent of the host that needed it clears its workloads."""

import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from provisioning.agent.workloads.identity import isolation_available
from provisioning.agent.workloads.traversal import ancestors_release, ancestors_traversable

pytestmark = pytest.mark.skipif(not isolation_available(), reason="changes modes as root only")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def private_home():
    """Given a private folder (like /root, 0700) holding two workload roots, and a ledger; in a
    folder of /tmp's own (pytest's tmp_path sits under a 0700 folder other runs share)."""
    tmp_path = Path(tempfile.mkdtemp(prefix="nc-traversal-", dir="/tmp"))
    home = tmp_path / "home"
    (home / "a" / "slots").mkdir(parents=True)
    (home / "b" / "slots").mkdir(parents=True)
    home.chmod(0o700)
    tmp_path.chmod(0o755)
    yield home, tmp_path / "ledger"
    shutil.rmtree(tmp_path)


def test_the_search_bit_is_added_and_given_back_by_the_last_holder(private_home):
    home, ledger = private_home
    # When two agents' workload roots need a way through
    changed = ancestors_traversable(home / "a" / "slots", holder=home / "a", ledger_dir=ledger)
    ancestors_traversable(home / "b" / "slots", holder=home / "b", ledger_dir=ledger)
    # Then only the search bit was added, once, to each closed folder above them
    assert changed == [home]
    assert _mode(home) == 0o701
    # When the first agent clears its workloads, the other's notebooks keep their way in
    assert ancestors_release(holder=home / "a", ledger_dir=ledger) == []
    assert _mode(home) == 0o701
    # And when the last one does, every folder is as it was
    assert ancestors_release(holder=home / "b", ledger_dir=ledger) == [home]
    assert _mode(home) == 0o700


def test_a_release_keeps_other_changes_to_the_mode(private_home):
    home, ledger = private_home
    ancestors_traversable(home / "a" / "slots", holder=home / "a", ledger_dir=ledger)
    home.chmod(0o751)  # someone opened it to the group meanwhile
    ancestors_release(holder=home / "a", ledger_dir=ledger)
    assert _mode(home) == 0o750


def test_folders_already_passable_are_left_alone(private_home):
    home, ledger = private_home
    home.chmod(0o711)
    assert ancestors_traversable(home / "a" / "slots", holder=home / "a", ledger_dir=ledger) == []
    assert ancestors_release(holder=home / "a", ledger_dir=ledger) == []
    assert _mode(home) == 0o711


def test_a_workload_root_that_is_gone_holds_nothing(private_home):
    home, ledger = private_home
    # Given an agent whose workload root was removed without clearing (a test's, say)
    ancestors_traversable(home / "a" / "slots", holder=home / "a", ledger_dir=ledger)
    ancestors_traversable(home / "b" / "slots", holder=home / "b", ledger_dir=ledger)
    shutil.rmtree(home / "b")
    # When the other one clears its workloads, the folder is restored all the same
    assert ancestors_release(holder=home / "a", ledger_dir=ledger) == [home]
    assert _mode(home) == 0o700
