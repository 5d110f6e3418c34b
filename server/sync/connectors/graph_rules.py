"""Forwarding rules through Microsoft Graph (Exchange Online): the CRM's rule is an Inbox
message rule (``/users/{id}/mailFolders/inbox/messageRules``) named ``Regarding: forward
to the CRM`` whose action forwards each incoming email *as an attachment* to the forward
mailbox, which then reads the forward from the user with the original attached (Graph's
``redirectTo`` would keep the original sender and lose who forwarded it). The app needs
the ``MailboxSettings.ReadWrite`` application permission. Other rules are left alone.
"""
from __future__ import annotations

from urllib.parse import quote

from server.sync.connectors.base import ConnectorError, ForwardRules
from server.sync.connectors.graph_client import GraphSession

RULE_NAME = "Regarding: forward to the CRM"


class GraphRules(GraphSession, ForwardRules):
    """``with GraphRules(account) as rules: rules.deploy("crm@contoso.example")``."""

    def _path(self, rule_id: str | None = None) -> str:
        base = f"{self.client.user}/mailFolders/inbox/messageRules"
        return f"{base}/{quote(rule_id, safe='')}" if rule_id else base

    def _fail(self, reply, what: str) -> ConnectorError:
        if reply.status == 403:
            return ConnectorError("consent_missing", f"Microsoft Graph denied {what} for "
                                  f"{self.account.address}. Grant the application permission "
                                  "MailboxSettings.ReadWrite with admin consent in Microsoft "
                                  "Entra ID.", severity="auth")
        return self.client.error(reply, what)

    def _ours(self) -> dict | None:
        what = "reading the Inbox rules"
        reply = self.client.call("GET", self._path(), what=what)
        if not reply.ok:
            raise self._fail(reply, what)
        return next((rule for rule in reply.json().get("value", [])
                     if rule.get("displayName") == RULE_NAME), None)

    def forwards_to(self) -> str | None:
        rule = self._ours()
        targets = ((rule or {}).get("actions") or {}).get("forwardAsAttachmentTo") or []
        if not rule or not rule.get("isEnabled", True) or not targets:
            return None
        return (targets[0].get("emailAddress") or {}).get("address")

    def deploy(self, forward_to: str) -> None:
        body = {"displayName": RULE_NAME, "sequence": 1, "isEnabled": True,
                "actions": {"forwardAsAttachmentTo": [{"emailAddress": {"address": forward_to}}],
                            "stopProcessingRules": False}}
        rule = self._ours()
        what = "saving the Inbox rule"
        reply = (self.client.call("PATCH", self._path(rule["id"]), what=what, json_body=body)
                 if rule else self.client.call("POST", self._path(), what=what, json_body=body))
        if not reply.ok:
            raise self._fail(reply, what)

    def remove(self) -> bool:
        rule = self._ours()
        if rule is None:
            return False
        what = "deleting the Inbox rule"
        reply = self.client.call("DELETE", self._path(rule["id"]), what=what)
        if not reply.ok and reply.status != 404:
            raise self._fail(reply, what)
        return True
