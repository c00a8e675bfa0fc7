"""scripts/audit: reading pip-audit and npm audit reports, and the dependency audit itself (skipped offline)."""

import importlib.machinery
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "audit"


def load_audit():
    loader = importlib.machinery.SourceFileLoader("audit_script", str(SCRIPT))
    spec = importlib.util.spec_from_loader("audit_script", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


audit = load_audit()


def test_pip_audit_findings_are_vulnerable():
    """A package with a known vulnerability makes the pip-audit result 'vulnerable', naming id and fix."""
    report = {"dependencies": [
        {"name": "quart", "version": "0.22.0", "vulns": []},
        {"name": "h11", "version": "0.14.0", "vulns": [
            {"id": "GHSA-vqfr-h8mv-ghfj", "fix_versions": ["0.16.0"], "aliases": ["CVE-2025-43859"]}]},
        {"name": "chat-widget", "skip_reason": "distribution marked as editable"},
    ]}
    result = audit.summarize_pip_audit(json.dumps(report))
    assert result.status == "vulnerable"
    assert result.lines == ["h11 0.14.0: GHSA-vqfr-h8mv-ghfj (CVE-2025-43859); fixed in 0.16.0"]


def test_pip_audit_clean_report_is_ok():
    """Packages checked without findings are 'ok'; the editable project itself is not counted as unchecked."""
    report = {"dependencies": [{"name": "quart", "version": "0.22.0", "vulns": []},
                               {"name": "chat-widget", "skip_reason": "distribution marked as editable"}]}
    result = audit.summarize_pip_audit(json.dumps(report))
    assert result.status == "ok" and result.lines == ["1 packages checked, no known vulnerabilities"]


def test_pip_audit_nothing_checked_is_skipped():
    """When the service knew none of the packages (offline, a mirror), the check is skipped, not passed."""
    report = {"dependencies": [{"name": "quart", "skip_reason": "Dependency not found on PyPI and could not be audited"}]}
    assert audit.summarize_pip_audit(json.dumps(report)).status == "skipped"


def test_pip_audit_without_json_is_not_a_report():
    """A crash or a traceback instead of JSON yields None, which the runner turns into 'skipped'."""
    assert audit.summarize_pip_audit("Traceback (most recent call last): ...") is None


def test_npm_audit_findings_are_vulnerable():
    """npm audit's vulnerabilities become 'vulnerable' lines with severity, range and fix."""
    report = {"vulnerabilities": {"pyodide": {"severity": "high", "range": "<314.0.8", "fixAvailable": True}},
              "metadata": {"vulnerabilities": {"info": 0, "low": 0, "moderate": 0, "high": 1, "critical": 0, "total": 1}}}
    result = audit.summarize_npm_audit(json.dumps(report))
    assert result.status == "vulnerable" and result.lines == ["pyodide (high, <314.0.8): fix available"]


def test_npm_audit_clean_report_is_ok():
    """Zero vulnerabilities in the production dependencies is 'ok'."""
    report = {"vulnerabilities": {}, "metadata": {"vulnerabilities": {"high": 0, "critical": 0, "total": 0}}}
    assert audit.summarize_npm_audit(json.dumps(report)).status == "ok"


def test_npm_audit_service_error_is_skipped():
    """An advisory endpoint that answers an error (offline, a registry mirror) makes the check 'skipped'."""
    report = {"message": "405 Method Not Allowed", "error": {"summary": "", "detail": ""}, "statusCode": 405}
    result = audit.summarize_npm_audit(json.dumps(report))
    assert result.status == "skipped" and "405" in result.lines[0]


def test_dependency_audit():
    """The installed Python and npm dependencies have no known vulnerabilities (skipped when it cannot check)."""
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=400)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    skipped = [line for line in done.stdout.splitlines() if ": skipped: " in line]
    if skipped:
        pytest.skip("; ".join(skipped))
