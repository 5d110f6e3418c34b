"""Administration of server-side sync: email server profiles, mailboxes, folder rules,
the blocklist, quarantine, the dashboard, Test & Enable, users' own mailboxes and alert
emails.
"""
