"""Render config/schema.yaml as the Markdown key reference of docs/configuration.md.

    python docs/schema_reference.py            # print the reference
    python docs/schema_reference.py --write    # replace the generated part of docs/configuration.md

The generated part lies between the two GENERATED markers of docs/configuration.md; the text around it is
written by hand.
"""
import argparse
import json
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs/configuration.md"
BEGIN = "<!-- GENERATED from config/schema.yaml by docs/schema_reference.py: edit the schema, not this part -->"
END = "<!-- END GENERATED -->"


def _type(node: dict) -> str:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#block-{name.lower()})"
    if "enum" in node:
        return " | ".join(f"`{v}`" for v in node["enum"])
    if ("oneOf" in node or "anyOf" in node) and "type" not in node:
        return " or ".join(_type(n) for n in node.get("oneOf", node.get("anyOf"))
                           if "type" in n or "$ref" in n or "enum" in n) or "see description"
    kind = node.get("type", "")
    kinds = kind if isinstance(kind, list) else [kind]
    if "array" in kinds and isinstance(node.get("items"), dict) and "type" in node["items"]:
        kinds = [f"array of {node['items']['type']}" if k == "array" else k for k in kinds]
    return " or ".join(k for k in kinds if k)


def _default(node: dict) -> str:
    if "default" not in node:
        return ""
    value = node["default"]
    if value == {} and ("properties" in node or "$ref" in node):
        return ""  # an object whose keys carry their own defaults
    return "`" + json.dumps(value, ensure_ascii=False).replace("|", "\\|") + "`"


def _cell(text) -> str:
    return " ".join(str(text or "").split()).replace("|", "\\|")


def _rows(node: dict, path: str, rows: list) -> None:
    """One row per key below ``node``; maps of named entries (corpora, experiments, ...) as ``<name>``."""
    for key, child in (node.get("properties") or {}).items():
        child_path = f"{path}.{key}" if path else key
        rows.append((child_path, _type(child), _default(child), child.get("description", "")))
        _rows(child, child_path, rows)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        entry = f"{path}.<name>"
        if "$ref" in extra or extra.get("description") or "properties" in extra:
            rows.append((entry, _type(extra) or "object", "", extra.get("description", "")))
        _rows(extra, entry, rows)


def _table(rows: list) -> list[str]:
    out = ["| key | type | default | description |", "|---|---|---|---|"]
    out += [f"| `{p}` | {_cell(t)} | {_cell(d)} | {_cell(desc)} |" for p, t, d, desc in rows]
    return out


def render(schema: dict) -> str:
    lines = [BEGIN, ""]
    for key, node in schema["properties"].items():
        lines += [f"### `{key}`", ""]
        head = [f"type {_cell(_type(node))}"] + ([f"default {_default(node)}"] if _default(node) else [])
        lines += [(_cell(node.get("description")) + " " if node.get("description") else "") + f"({', '.join(head)})", ""]
        rows: list = []
        _rows(node, key, rows)
        if rows:
            lines += _table(rows) + [""]
    lines += ["### Shared blocks", "", "Blocks that several keys above use (`$defs` of the schema).", ""]
    for name, node in schema.get("$defs", {}).items():
        lines += [f"#### block {name}", "", _cell(node.get("description")) or f"`{name}`", ""]
        rows = []
        _rows(node, name, rows)
        if rows:
            lines += _table(rows) + [""]
    return "\n".join(lines + [END])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="replace the generated part of docs/configuration.md")
    args = ap.parse_args()
    text = render(yaml.safe_load((REPO / "config/schema.yaml").read_text()))
    if not args.write:
        print(text)
        return 0
    page = PAGE.read_text()
    if BEGIN not in page or END not in page:
        print(f"error: {PAGE} lacks the GENERATED markers", file=sys.stderr)
        return 1
    before, rest = page.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    tmp = PAGE.with_suffix(".md.tmp")
    tmp.write_text(before + text + after)
    tmp.replace(PAGE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
