"""The sync engine: server-side synchronization of mailboxes into the CRM.

A message goes through pure stages first (``message.parse`` -> ``rules.decide`` ->
``threading.correlation_keys``, with ``html`` to make bodies safe to show), then the
engine's I/O stages (correlation lookups, party resolution, storing the activity).
"""
