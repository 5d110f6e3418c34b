"""Security: users, teams, business units, roles and privileges, sharing, field security,
passwords, API tokens and sign-in. Every read and write goes through ``authz``."""
