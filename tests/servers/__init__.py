"""Real protocol peers for the test suite, started and stopped by pytest fixtures.

dovecot.py (IMAP, POP3), smtp.py (aiosmtpd), radicale_server.py (CalDAV/CardDAV),
browser.py (headless Chromium through Playwright), ports.py (free loopback ports,
readiness waits, self-signed certificates); fixtures.py turns them into a pytest plugin.
"""
