"""schemathesis, all checks, positive and negative data, against a real server: 0 failures.

Every phase runs (examples, coverage, fuzzing, stateful) with every check,
positive data acceptance and negative data rejection included: the schema
must say exactly what the server accepts, document every status it answers,
and no input may yield a 5xx. The server has its own database and version
(`/add_image` writes rows) and an API key, sent as the schema's security
scheme says. Sequential (one worker) and seeded, so a failure reproduces.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serving.conftest import API_KEY

pytestmark = pytest.mark.slow  # the API fuzzer against a live server: make test-slow

REPO = Path(__file__).resolve().parents[2]


def test_schemathesis_all_checks_clean(scenario, live_server, base, tmp_path) -> None:  # type: ignore[no-untyped-def]
    scn = scenario("fuzz", api_key=API_KEY, max_upload_mb=1.0)
    scn.publish()
    srv = live_server(scn.settings)
    srv.wait_ready()
    cli = Path(sys.executable).with_name("schemathesis")
    env = {**os.environ, "PYTHONPATH": str(REPO), "SCHEMATHESIS_HOOKS": "tests.serving.schemathesis_hooks",
           "SCHEMATHESIS_FILE_PATH": f"/uploads/{base.files[base.ids[0]].name}",
           "SCHEMATHESIS_EVENT_CODE": base.event_a, "SCHEMATHESIS_IMAGE_ID": str(base.ids[3])}
    cmd = [str(cli), "run", f"{srv.url}/openapi.json", "--checks", "all", "--mode", "all", "--workers", "1",
           "--max-examples", os.environ.get("SCHEMATHESIS_EXAMPLES", "25"), "--seed", "13",
           "--generation-database", "none", "--suppress-health-check", "all", "--no-color",
           "--request-timeout", "30", "-H", f"X-API-Key: {API_KEY}", "--report", "junit",
           "--report-dir", str(tmp_path)]
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)  # its cache too
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-12000:]
    assert "No issues found" in out or "0 failures" in out or "passed" in out, out[-3000:]
