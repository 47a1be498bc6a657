"""The FinOps project's FOCUS validator (`focus-validator` on PyPI) as a tool in a venv of its own.

Its 2.x releases validate FOCUS 1.2 and need Python 3.12; the portal runs on 3.11, so the tool
gets `.venv-focus/` built from pyenv's 3.12 (`pyenv root`/versions/3.12.*). Without a 3.12 it
falls back to 3.11 with focus-validator 1.0.0 (FOCUS 1.0), which imports only with
multimethod<1.11. Made once by `make test` (the Makefile calls `--ensure`) and again only when
the plan below changes (a stamp in the venv records it), like the main venv's stamp.

Two workarounds for focus-validator 2.2.1, both about running it, not about what it checks:
- pyarrow is pinned below 21: focus-validator pins numpy<2, and pyarrow 21+ refuses numpy 1.x.
- it reads its ISO currency list from the relative path focus_validator/rules/currency_codes.csv,
  so it is run with its site-packages folder as the working directory.

What counts as an error: a rule that FAILs, except an alternative of an OR rule that PASSes.
The console lists every leaf it ran, so one branch of an "either … or" rule always shows FAIL
(InvoiceId-C-003-C passes as C-004 "MUST be null when not invoiced" OR C-005 "MUST NOT be
null when invoiced"; a dataset can satisfy only one of them). Those are not errors of the data.

Applicability criteria: what the portal supports (named accounts, projects as sub-accounts,
regions, resources with types, tags, unit prices from a public price list, usage measured).
Capacity reservations are not claimed: validator 2.2.1 drops the condition of
CapacityReservationStatus-C-004-C ("MUST NOT be null when CapacityReservationId is not null and
ChargeCategory is Usage") and so demands a status on every row, reservation or not.

Usage:  python -m devtools.focus_validator --ensure        (make the venv if needed)
        python -m devtools.focus_validator FILE.csv        (validate; exit 1 on errors)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("PORTAL_FOCUS_VENV", ROOT / ".venv-focus"))
STAMP = "installed-stamp.json"

PLAN_312 = {
    "python": "3.12",
    "focus": "1.2",
    "requirements": ["focus-validator==2.2.1", "pyarrow<21"],
}
PLAN_311 = {
    "python": "3.11",
    "focus": "1.0",
    "requirements": ["focus-validator==1.0.0", "multimethod<1.11"],
}

APPLICABILITY = (
    "ACCOUNT_NAMING_SUPPORTED",
    "SUB_ACCOUNT_SUPPORTED",
    "REGION_SUPPORTED",
    "BILLING_BASED_ON_PROVISIONED_RESOURCES_SUPPORTED",
    "RESOURCE_TYPE_ASSIGNMENT_SUPPORTED",
    "TAGGING_SUPPORTED",
    "UNIT_PRICING_SUPPORTED",
    "PUBLIC_PRICE_LIST_SUPPORTED",
    "NEGOTIATED_PRICING_SUPPORTED",
    "USAGE_MEASUREMENT_SUPPORTED",
)

_RESULT = re.compile(r"(?P<rule>[A-Za-z]+-[A-Z]-\d{3}-[A-Z]): (?P<status>PASS|FAIL|SKIPPED)\b")
_TOTAL = re.compile(r"Total: (\d+) \| Pass: (\d+) \| Fail: (\d+) \| Skipped: (\d+)")


class ValidatorUnavailable(RuntimeError):
    pass


@dataclass
class Verdict:
    focus_version: str
    validator: str
    output: str
    errors: list[str] = field(default_factory=list)
    excused: list[str] = field(default_factory=list)
    summary: str = ""

    @property
    def ok(self) -> bool:
        return not self.errors


def _pyenv_root() -> Path:
    if os.environ.get("PYENV_ROOT"):
        return Path(os.environ["PYENV_ROOT"])
    pyenv = shutil.which("pyenv")
    if pyenv:
        done = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
        if done.returncode == 0 and done.stdout.strip():
            return Path(done.stdout.strip())
    return Path.home() / ".pyenv"


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.name))


def _python(minor: str) -> Path | None:
    """The newest pyenv Python `minor` (e.g. "3.12"), else `python3.12` on the PATH."""
    versions = sorted((_pyenv_root() / "versions").glob(f"{minor}.*"), key=_version_key, reverse=True)
    for version in versions:
        candidate = version / "bin" / "python3"
        if re.fullmatch(rf"{re.escape(minor)}\.\d+", version.name) and candidate.exists():
            return candidate
    on_path = shutil.which(f"python{minor}")
    return Path(on_path) if on_path else None


def _plan() -> tuple[dict, Path]:
    python = _python("3.12")
    if python is not None:
        return PLAN_312, python
    python = _python("3.11") or (Path(sys.executable) if sys.version_info[:2] == (3, 11) else None)
    if python is None:
        raise ValidatorUnavailable("focus-validator needs Python 3.12 (or 3.11 for FOCUS 1.0); neither was found.")
    return PLAN_311, python


def _stamp() -> dict | None:
    try:
        return json.loads((VENV / STAMP).read_text())
    except (OSError, ValueError):
        return None


def ensure(*, quiet: bool = True) -> dict:
    """Make `.venv-focus` with the validator if it is missing or was made by another plan.
    Returns the plan it holds. Idempotent: a second call reads the stamp and does nothing."""
    plan, python = _plan()
    stamp = _stamp()
    if stamp == plan and (VENV / "bin" / "focus-validator").exists():
        return plan
    if VENV.exists():
        shutil.rmtree(VENV)
    print(f"Installing focus-validator ({', '.join(plan['requirements'])}) into {VENV} with {python} …")
    subprocess.run([str(python), "-m", "venv", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    if quiet:
        pip.append("-q")
    subprocess.run([*pip, *plan["requirements"]], check=True)
    (VENV / STAMP).write_text(json.dumps(plan))
    return plan


def _site_packages() -> Path:
    found = sorted((VENV / "lib").glob("python3.*/site-packages"))
    if not found:
        raise ValidatorUnavailable(f"{VENV} has no site-packages: run `python -m devtools.focus_validator --ensure`.")
    return found[0]


def _or_children(site_packages: Path) -> dict[str, list[str]]:
    """{rule id: the rules it accepts any one of} for every OR rule of the validator's model."""
    children: dict[str, list[str]] = {}
    for model_file in (site_packages / "focus_validator" / "rules").glob("model-*.json"):
        rules = json.loads(model_file.read_text()).get("ModelRules", {})
        for rule_id, rule in rules.items():
            requirement = (rule.get("ValidationCriteria") or {}).get("Requirement") or {}
            if requirement.get("CheckFunction") == "OR":
                children[rule_id] = [
                    item["ModelRuleId"] for item in requirement.get("Items", []) if item.get("ModelRuleId")
                ]
    return children


def verdict_from_output(
    output: str, *, or_children: dict[str, list[str]], focus_version: str, validator: str
) -> Verdict:
    """Read the console report of focus-validator 2.x: its errors are its FAILs less the losing
    alternatives of a passing OR. Output that is not a report (a crash, no summary) is an error."""
    status: dict[str, str] = {}
    for match in _RESULT.finditer(output):
        status.setdefault(match["rule"], match["status"])
    total = _TOTAL.search(output)
    verdict = Verdict(focus_version=focus_version, validator=validator, output=output)
    if total is None or not status:
        verdict.errors.append("focus-validator printed no validation results")
        return verdict
    verdict.summary = total.group(0)
    if "PASS" not in status.values():  # nothing checked (every rule skipped) is no pass
        verdict.errors.append("focus-validator passed no rule")
    excused = {child for parent, kids in or_children.items() if status.get(parent) == "PASS" for child in kids}
    for rule_id, state in sorted(status.items()):
        if state != "FAIL":
            continue
        (verdict.excused if rule_id in excused else verdict.errors).append(rule_id)
    return verdict


def validate(path: str | Path) -> Verdict:
    """Run the validator on the CSV file `path` (made with ensure() first)."""
    plan = _stamp()
    executable = VENV / "bin" / "focus-validator"
    if plan is None or not executable.exists():
        raise ValidatorUnavailable(f"{VENV} is not made: run `python -m devtools.focus_validator --ensure`.")
    path = Path(path).resolve()
    site_packages = _site_packages()
    if plan["focus"] == "1.0":
        command = [str(executable), "--data-file", str(path), "--validate-version", "1.0"]
    else:
        command = [
            str(executable),
            "--data-file",
            str(path),
            "--validate-version",
            plan["focus"],
            "--block-download",  # the rules ship with the package; no network is needed or used
            "--applicability-criteria",
            ",".join(APPLICABILITY),
        ]
    done = subprocess.run(command, cwd=site_packages, capture_output=True, text=True, check=False, timeout=300)
    output = done.stdout + done.stderr
    validator = plan["requirements"][0]
    if plan["focus"] == "1.0":
        # 1.0.0 prints "<check> failed:" per failing check and "Validation failed!"; it exits 0
        # either way. (The export is FOCUS 1.2-shaped: 1.0 names some columns differently.)
        failed = re.findall(r"^(\S+) failed:$", output, re.MULTILINE)
        if not failed and "Validation failed" in output:
            failed.append("Validation failed")
        verdict = Verdict(focus_version="1.0", validator=validator, output=output, errors=failed)
        if done.returncode != 0:
            verdict.errors.append(f"focus-validator exited {done.returncode}")
        return verdict
    verdict = verdict_from_output(
        output, or_children=_or_children(site_packages), focus_version=plan["focus"], validator=validator
    )
    if done.returncode != 0:
        verdict.errors.append(f"focus-validator exited {done.returncode}")
    return verdict


def main(argv: list[str]) -> int:
    if argv == ["--ensure"]:
        plan = ensure()
        print(f"focus-validator ready: {plan['requirements'][0]} (FOCUS {plan['focus']}) in {VENV}")
        return 0
    if len(argv) != 1:
        print(__doc__.split("Usage:")[1].strip())
        return 2
    verdict = validate(argv[0])
    print(verdict.output)
    print(f"{verdict.validator}, FOCUS {verdict.focus_version}: {verdict.summary}")
    print(f"excused (losing alternatives of a passing OR rule): {', '.join(verdict.excused) or 'none'}")
    print(f"errors: {', '.join(verdict.errors) or 'none'}")
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
