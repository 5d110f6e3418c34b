"""The CRM core: organization settings, records (accounts, contacts, leads, opportunities,
cases, queues), activities with their parties and regarding, and email address resolution."""
