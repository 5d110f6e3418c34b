"""The sync engine proper: one run over a mailbox, and the one path every message takes.

``run`` (a pass over a mailbox: folders, cursors, commits, errors) hands each fetched batch
to ``batch``, which parses it (``items``), schedules it in waves and retries a wave that
cannot be written one message at a time; ``wave`` looks a wave up, decides each message
with ``mail.rules`` and writes it. What they use, one job a module: ``context`` (what a run
knows about its mailbox), ``content`` (identity, what tracking stores), ``correlate``
(candidates, parents, track requests), ``decisions`` (outcomes, the decision log),
``quarantine``, ``forward`` (forward mailboxes), ``queues``, ``contacts``, ``keywords``
(the category written back); besides them ``folders``, ``alerts``, ``accounts``, ``oauth``
and ``outgoing`` (the mail the CRM sends).
"""
