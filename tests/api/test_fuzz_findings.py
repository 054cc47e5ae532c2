"""What the fuzzer (scripts/api_fuzz.py, schemathesis against a live server) found, pinned
here so that it stays fixed without waiting for the fuzzer to draw the same input again."""
from __future__ import annotations

import pytest

from marketplace.choices import Role
from marketplace.models import Instance, ResourceBinding

from .. import factories

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("device_id", [2**63, 10**20, -(2**63) - 1, 0, -1])
def test_a_binding_to_a_device_id_no_database_can_hold_is_400_not_500(api, publisher, globex, device_id):
    """POST /instances/ with ``"bindings": {"my-printer": 100000000000000000000}`` was a 500
    (OverflowError: Python int too large to convert to SQLite INTEGER)."""
    customer = factories.make_user("gina")
    factories.add_member(customer, globex, Role.MEMBER)
    version = factories.make_published(factories.make_integration(publisher.memberships.get().organization,
                                                                  slug="printer-sync"))
    devices = factories.make_bindings(globex)
    body = {
        "integration": "printer-sync", "version": version.number, "name": "Plant printers",
        "config": {"site": "Plant 1", "apiKey": "k"},
        "bindings": {"erp": devices["erp"].pk, "my-printer": device_id},
    }
    response = api(customer).post("/api/v1/instances/", body, format="json")
    assert response.status_code == 400, response.content
    assert set(response.json()["error"]["fields"]) == {"bindings.my-printer"}
    assert not Instance.objects.exists() and not ResourceBinding.objects.exists()


@pytest.mark.parametrize("tail", ["draft/", "draft/package/"])
def test_options_on_a_draft_url_describes_it_and_keeps_the_tenant_wall(api, publisher, outsider, tail):
    """OPTIONS /integrations/{slug}/draft/ (and draft/package/) was a 500: DRF's metadata asks
    the view for its object before describing PUT, and the view had none."""
    integration = factories.make_integration(publisher.memberships.get().organization, slug="printer-sync")
    url = f"/api/v1/integrations/{integration.slug}/{tail}"
    response = api(publisher).options(url)
    assert response.status_code == 200, response.content
    assert "PUT" in response.json()["actions"]
    assert api(outsider).options(url).status_code == 404
    assert api(publisher).options(f"/api/v1/integrations/no-such-thing/{tail}").status_code == 404


@pytest.mark.parametrize("value", ["1e30", "1.5", "0", "-3", str(2**63), "x"])
def test_a_run_filter_on_an_instance_id_no_database_holds_is_a_400(api, member, value):
    response = api(member).get("/api/v1/runs/", {"instance": value})
    assert response.status_code == 400
    assert "instance" in response.json()["error"]["fields"]
