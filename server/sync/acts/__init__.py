"""Appointments, contacts and tasks synced with users' mail servers: the run (``run``), its
pull and push halves (``pull``, ``push``), the CRM records as the sync sees them
(``records``) and the synchronization filters (``filters``). The stores are connectors
(``connectors.item_store``); the mapping is pure (``server.sync.items``)."""
