"""Rule deployment for Exchange Online through Graph message rules, against the Graph fake
(held to Graph's published schema): the CRM's Inbox rule forwards each email as an
attachment to the forward mailbox, where it is tracked for the user; a second deployment
replaces it, removing it leaves the user's own rules; without MailboxSettings.ReadWrite the
deployment fails saying which permission is missing."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from server.db import db
from server.security import authz
from server.sync.admin.forward_rules import check_rule, deploy_rule, remove_rule
from server.sync.connectors.graph_rules import RULE_NAME
from server.sync.engine.run import sync_mailbox
from server.sync.models import Mailbox
from tests.fakes import graph_rules as fake_rules
from tests.sync import world as w
from tests.sync.graph.conftest import BOB, GraphStore

FORWARD = "crm@org.example"
CSDL = next((folder / "shared" / "reference" / "msgraph-v1.0.csdl.xml"
             for folder in Path(__file__).resolve().parents
             if (folder / "shared" / "reference" / "msgraph-v1.0.csdl.xml").is_file()), None)
EDM = "{http://docs.oasis-open.org/odata/ns/edm}"


@pytest.fixture
def site(app, graph, store, crm):
    graph.app_roles = (*graph.app_roles, "MailboxSettings.ReadWrite")
    GraphStore(graph, FORWARD)
    prof = w.profile("graph", **store.profile_fields())
    bob_box = w.mailbox(crm.bob, prof=prof, incoming_method="forward_mailbox",
                        tracking_option="all")
    forward = Mailbox(name="Forward", email_address=FORWARD, is_forward_mailbox=True,
                      server_profile_id=prof.id, enabled=True, email_approved=True,
                      owning_business_unit_id=crm.bob.business_unit_id)
    db.session.add(forward)
    db.session.commit()
    return graph, bob_box, forward, authz.principal(crm.bob)  # his own rule: write on it


def test_a_graph_rule_forwards_mail_to_the_forward_mailbox_tracked_for_the_user(site):
    graph, bob_box, forward, bob = site
    graph.box(BOB).rules["own"] = {"id": "own", "displayName": "Newsletters", "sequence": 5,
                                   "isEnabled": True, "actions": {"moveToFolder": "x"}}
    assert deploy_rule(bob, bob_box).ok, bob_box.forward_rule_message
    assert deploy_rule(bob, bob_box).ok  # replaced, not doubled
    ours = [r for r in graph.box(BOB).rules.values() if r["displayName"] == RULE_NAME]
    assert len(ours) == 1
    assert ours[0]["actions"]["forwardAsAttachmentTo"] == [{"emailAddress": {"address": FORWARD}}]
    db.session.commit()

    graph.deliver(BOB, w.raw(mid="order@customer.example", subject="Order", to=BOB))
    assert len(graph.messages_in(FORWARD, "Inbox")) == 1
    result = sync_mailbox(forward.id)
    assert (result.fetched, result.tracked) == (1, 1)
    assert w.tracked("order@customer.example")[0].owner_user_id == bob_box.user_id

    assert check_rule(bob, bob_box).ok
    assert remove_rule(bob, bob_box).ok and list(graph.box(BOB).rules) == ["own"]
    assert check_rule(bob, bob_box).message.startswith("There is no forwarding rule")


def test_without_the_mailbox_settings_permission_the_deployment_says_what_to_grant(site):
    graph, bob_box, forward, bob = site
    graph.app_roles = tuple(r for r in graph.app_roles if r != "MailboxSettings.ReadWrite")
    result = deploy_rule(bob, bob_box)
    assert not result.ok and "MailboxSettings.ReadWrite" in result.message
    assert bob_box.forward_rule_status == "failed"


def _properties(root, kind: str, name: str) -> set[str]:
    node = root.find(f".//{EDM}{kind}[@Name='{name}']")
    assert node is not None, name
    return {p.get("Name") for p in node.findall(f"{EDM}Property")} | \
        {p.get("Name") for p in node.findall(f"{EDM}NavigationProperty")}


@pytest.mark.skipif(CSDL is None, reason="shared/reference/msgraph-v1.0.csdl.xml is missing")
def test_the_rule_the_connector_writes_and_the_fake_returns_are_graphs_shapes():
    root = ET.parse(CSDL).getroot()
    rule = _properties(root, "EntityType", "messageRule") | {"id"}
    assert fake_rules.RULE_PROPERTIES <= rule and fake_rules.WRITABLE <= rule
    actions = _properties(root, "ComplexType", "messageRuleActions")
    assert {"forwardAsAttachmentTo", "stopProcessingRules"} <= actions
    folder = root.find(f".//{EDM}EntityType[@Name='mailFolder']")
    assert folder.find(f"{EDM}NavigationProperty[@Name='messageRules']") is not None
    assert {"emailAddress"} <= _properties(root, "ComplexType", "recipient")
