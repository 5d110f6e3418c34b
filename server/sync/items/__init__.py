"""Appointments, contacts and tasks as the mail servers keep them: the pure mapping between
the stores' interchange format (iCalendar VEVENT/VTODO, vCard) and the CRM's field values
(``calendar``, ``vcard``), the fields that sync and their default directions (``fields``),
and the three-way merge that decides which side's value each field takes (``merge``).
No I/O and no database: the engine (``server.sync.acts``) reads and writes."""
