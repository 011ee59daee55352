"""Print the search server's OpenAPI document (what GET /openapi.json serves), without starting it.

Run with the project's venv: `.venv/bin/python clients/node/scripts/openapi.py`. No database,
index or model is needed: the document comes from the routes and schemas alone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from serving.app import create_app

json.dump(create_app().openapi(), sys.stdout, indent=2, sort_keys=True)
sys.stdout.write("\n")
