"""The policy file's JSON Schema, generated from the pydantic models (the one source of truth).

`policies/policy.schema.json` is this output, committed for editors (a test keeps it current); a policy
file opts in with `# yaml-language-server: $schema=policy.schema.json` on its first line. The same
schema validates included fragments: every top-level key of a policy is optional.
"""

from __future__ import annotations

import json

from router.policy.schema import Policy


def policy_json_schema() -> str:
    schema = Policy.model_json_schema(by_alias=True)
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": "hybrid-router policy"}
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"
