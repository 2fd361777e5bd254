"""The third-party compliance checker scim2-tester (it drives the server with scim2-client)
runs every check it has against /scim/v2: discovery, then create / read / query / replace /
patch / delete of Users and Groups, on models it builds from what our /Schemas and
/ResourceTypes publish. Every check must succeed."""

from __future__ import annotations

import pytest
from scim2_client.engines.wsgi import WSGISCIMClient
from scim2_tester import Status, check_server
from scim_kit import scim_token

OK = {Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE}


@pytest.mark.slow
def test_scim2_tester_passes_every_check(app):
    token = scim_token(app)
    issuer = app.extensions["idp"].settings.issuer.rstrip("/")
    client = WSGISCIMClient(
        app, base_url=issuer + "/scim/v2", headers={"Authorization": f"Bearer {token}"}
    )
    results = check_server(client, raise_exceptions=False)
    failed = [
        f"{r.resource_type or '-'} {r.title}: {r.status.name} {r.reason}"
        for r in results
        if r.status not in OK and r.status != Status.SKIPPED
    ]
    assert results and not failed, "\n".join(failed)
    titles = {r.title for r in results if r.status in OK}
    # The checker reached the resource checks of both types, not only discovery.
    for wanted in (
        "object_creation",
        "object_replacement",
        "check_add_attribute",
        "check_remove_attribute",
        "object_deletion",
    ):
        assert wanted in titles, titles
    assert {r.resource_type for r in results if r.title == "object_creation"} == {"User", "Group"}
    skipped = sorted({r.title for r in results if r.status == Status.SKIPPED})
    # Nothing is skipped except the checks of features the server says it has not got.
    assert skipped == [], skipped
