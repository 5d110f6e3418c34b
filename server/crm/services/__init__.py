"""The CRM's upper floor: services that act for a user and check their privileges, depth and
field security (``server.security``) on every path, for pages, the REST API, the add-in and
the sync engine alike. Records (``records``), lists and search (``search``), a record's
activity timeline (``timeline``), activities people work on (``activity_actions``), tracking
email and appointments (``tracking``), whether an item is tracked (``tracked``) and resolving
addresses to records (``resolution``).

Layers, one way: web / addin / sync → ``server.crm.services`` → ``server.security`` →
``server.crm`` (tables) → ``server.db``.
"""
