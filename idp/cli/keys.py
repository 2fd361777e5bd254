"""``idp keys``: signing keys and request-object encryption keys (list, rotate)."""

from __future__ import annotations

import json

import click

from .base import out, ready


@click.group()
def keys() -> None:
    """Signing keys."""


@keys.command("list")
@click.option("--json", "as_json", is_flag=True)
def keys_list(as_json: bool) -> None:
    svc = ready()
    rows = svc.keys.list()
    if as_json:
        click.echo(json.dumps({"keys": rows}))
        return
    for r in rows:
        click.echo(
            f"{r['kid']}  {r['kty']:3}  {r['use']}  {r['alg']:12}  {r['status']:8}  "
            f"created {r['created_at']}" + (f"  retires {r['retire_at']}" if r["retire_at"] else "")
        )


@keys.command("rotate")
@click.option(
    "--prepare", is_flag=True, help="Only publish the next keys (no signing change); rotate later."
)
@click.option("--json", "as_json", is_flag=True)
def keys_rotate(prepare: bool, as_json: bool) -> None:
    """The next key (made now unless prepared) starts signing; the old one keeps verifying
    for keys.rotation_overlap_days."""
    svc = ready()
    changes = svc.keys.rotate(prepare=prepare)
    out(
        as_json,
        {"changes": changes},
        "\n".join(" ".join(f"{k}={v}" for k, v in c.items()) for c in changes),
    )
