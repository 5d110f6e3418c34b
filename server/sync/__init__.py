"""Server-side synchronization of mailboxes into the CRM, one sub-package per role.

- ``mail``: reading mail with no I/O (``message.parse``, ``mime``, the tracking rule chain
  in ``rules`` and its vocabulary in ``decision``, correlation keys in ``correlation``);
- ``engine``: a run over one mailbox (``run``) and the one path of its messages
  (``batch``, ``wave``), folders, quarantine, alerts, connector accounts and outgoing mail;
- ``workers``: the worker loop, the schedule and push;
- ``admin``: profiles, mailboxes, folder rules, the dashboard, Test & Enable, alert mail;
- ``connectors``: one module per protocol behind ``connectors.base``;
- ``models``: the sync tables.
"""
