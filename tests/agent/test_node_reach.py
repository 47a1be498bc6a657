"""The agent's --address and --ssh-ports: checked before anything starts, then reported."""

import pytest

from provisioning.agent.main import main
from provisioning.protocol import ssh_ports_parse


@pytest.mark.parametrize("text, expected", [("22000-22099", (22000, 22099)), (" 1024 - 1024 ", (1024, 1024))])
def test_a_port_range_parses(text, expected):
    assert ssh_ports_parse(text) == expected


@pytest.mark.parametrize("text", ["22000", "22099-22000", "80-90", "22000-99999", "a-b", "", "22000-22099-1"])
def test_a_bad_port_range_says_what_is_wrong(text):
    with pytest.raises(ValueError, match="SSH port range"):
        ssh_ports_parse(text)


@pytest.mark.parametrize(
    "option, value, says",
    [
        ("--ssh-ports", "22099-22000", "1024 <= FIRST <= LAST <= 65535"),
        ("--ssh-ports", "ssh", "expected FIRST-LAST"),
        ("--address", "127.0.1", "not an IP address"),
        # TEST-NET-3 (RFC 5737): documentation only, never an address of this host
        ("--address", "203.0.113.7", "not an address of this host"),
    ],
)
def test_a_bad_option_stops_the_agent_before_it_starts(tmp_path, capsys, option, value, says):
    argv = ["--portal", "http://127.0.0.1:9", "--simulate", "1xH100-80GB", "--once",
            "--state-file", str(tmp_path / "state.json"), option, value]

    with pytest.raises(SystemExit) as stopped:
        main(argv)

    assert stopped.value.code == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "state.json").exists()
