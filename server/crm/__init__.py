"""The CRM's lower floor: what it stores and how values are read. Organization settings,
records (accounts, contacts, leads, opportunities, cases, queues: ``models``), activities with
their parties and regarding (``activities``), stored email addresses (``addresses``), the
record types' fields (``registry``, ``values``) and sanitized HTML (``html``).

These modules sit below ``server.security`` (which reads them to scope queries) and import
nothing above ``server.db``: no security, no services. What acts for a user, checking their
privileges, is the upper floor, :mod:`server.crm.services`.
"""
