"""What an apply did (or, in a dry run, would do): the changes, section by section of the file,
as text lines (the diff ``idp config apply`` prints) and as one JSON object (``--json``)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Change:
    kind: str
    name: str
    action: str  # create | update | delete
    details: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "name": self.name, "action": self.action}
        if self.details:
            out["details"] = self.details
        return out

    def text(self) -> str:
        sign = {"create": "+", "update": "~", "delete": "-"}[self.action]
        line = f"{sign} {self.kind} {self.name}"
        if [d.get("field") for d in self.details] == ["value"]:
            d = self.details[0]
            return f"{line}: {_short(d['old'])} -> {_short(d['new'])}"
        parts = [_detail_text(d) for d in self.details]
        return f"{line}: {'; '.join(parts)}" if parts else line


def _detail_text(d: dict[str, Any]) -> str:
    if "text" in d:
        return f"{d['field']}: {d['text']}"
    if "add" in d or "remove" in d:
        items = [f"+{x}" for x in d.get("add", [])] + [f"-{x}" for x in d.get("remove", [])]
        return f"{d['field']} {' '.join(items)}"
    return f"{d['field']}: {_short(d.get('old'))} -> {_short(d.get('new'))}"


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."


@dataclass
class Plan:
    changes: list[Change]
    kept: list[dict[str, str]]
    generated_secrets: dict[str, str]
    prune: bool
    restart_needed: bool

    def summary(self) -> dict[str, int]:
        counts = Counter(c.action for c in self.changes)
        return {a: counts.get(a, 0) for a in ("create", "update", "delete")}

    def as_dict(self, dry_run: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "dry_run": dry_run,
            "prune": self.prune,
            "changed": bool(self.changes),
            "summary": self.summary(),
            "changes": [c.as_dict() for c in self.changes],
            "kept": self.kept,
            "restart_needed": self.restart_needed and not dry_run,
        }
        if self.generated_secrets and not dry_run:
            out["generated_secrets"] = self.generated_secrets
        return out

    def lines(self, dry_run: bool) -> list[str]:
        out = [c.text() for c in self.changes] or ["no changes"]
        s = self.summary()
        if self.changes:
            out.append(
                f"{s['create']} to create, {s['update']} to update, {s['delete']} to delete"
                + (": dry run, nothing written" if dry_run else ": applied")
            )
        if self.kept:
            out.append(
                f"{len(self.kept)} not in the file and kept (--prune deletes them): "
                + ", ".join(f"{k['kind']} {k['name']}" for k in self.kept)
            )
        if not dry_run:
            for client_id, secret in self.generated_secrets.items():
                out.append(f"client {client_id}: generated secret (shown once): {secret}")
            if self.restart_needed:
                out.append("policies changed: running nodes apply them on their next request")
        return out
