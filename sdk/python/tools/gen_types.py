"""Generates awx_sdk/types.py (TypedDicts of the API's schemas) from openapi/openapi.json.

    python tools/gen_types.py           # writes awx_sdk/types.py
    python tools/gen_types.py --check   # exit 1 if awx_sdk/types.py differs (drift)
"""

from __future__ import annotations

import json
import keyword
import sys
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[1]
OPENAPI = ROOT.parents[1] / "openapi" / "openapi.json"
OUTPUT = ROOT / "awx_sdk" / "types.py"


def annotation(schema: Dict[str, Any]) -> str:
    if "$ref" in schema:
        return '"' + schema["$ref"].rsplit("/", 1)[-1] + '"'
    for combinator in ("oneOf", "anyOf", "allOf"):
        if combinator in schema:
            parts = [annotation(part) for part in schema[combinator]]
            if combinator == "allOf" and len(parts) == 1:
                return parts[0]
            return "Any"
    kind = schema.get("type")
    if isinstance(kind, list):
        nullable = "null" in kind
        rest = [k for k in kind if k != "null"]
        inner = annotation({**schema, "type": rest[0]}) if len(rest) == 1 else "Any"
        return f"Optional[{inner}]" if nullable else inner
    if kind == "string":
        return "str"
    if kind == "integer":
        return "int"
    if kind == "boolean":
        return "bool"
    if kind == "number":
        # The API has no floating-point money; a number that is not an integer is kept as parsed.
        return "Any"
    if kind == "array":
        return f"List[{annotation(schema.get('items', {}))}]"
    if kind == "object" and "properties" not in schema:
        return "Dict[str, Any]"
    return "Any"


def render(spec: Dict[str, Any]) -> str:
    lines: List[str] = [
        '"""The API\'s schemas as TypedDicts, generated from openapi/openapi.json by tools/gen_types.py.',
        "",
        "Do not edit: regenerate with `python sdk/python/tools/gen_types.py`; a test fails when this file drifts.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Any, Dict, List, Optional",
        "",
        "from typing import TypedDict",
        "",
    ]
    aliases: List[str] = []
    schemas = spec["components"]["schemas"]
    for name in sorted(schemas):
        schema = schemas[name]
        properties = schema.get("properties")
        if schema.get("type") != "object" or not properties:
            aliases.append(f"{name} = {annotation(schema) if 'enum' not in schema else 'str'}")
            continue
        required = set(schema.get("required", []))
        fields = sorted(properties)
        bad = [field for field in fields if keyword.iskeyword(field) or not field.isidentifier()]
        if bad:
            body = ", ".join(f'"{field}": {annotation(properties[field])}' for field in fields)
            lines += ["", f'{name} = TypedDict("{name}", {{{body}}}, total=False)', ""]
            continue
        needed = [field for field in fields if field in required]
        optional = [field for field in fields if field not in required]
        lines += ["", f"class {name}(TypedDict, total=False):"]
        doc = (schema.get("description") or name).splitlines()[0].replace('"""', "'")
        lines.append(f'    """{doc} Required: {", ".join(needed) or "none"}."""')
        lines.append("")
        for field in needed + optional:
            lines.append(f"    {field}: {annotation(properties[field])}")
        lines.append("")
    lines += ["", "# Schemas that are not objects."] + aliases + [""]
    return "\n".join(lines)


def main() -> int:
    text = render(json.loads(OPENAPI.read_text()))
    if "--check" in sys.argv:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} differs from what {OPENAPI} generates: run python sdk/python/tools/gen_types.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
