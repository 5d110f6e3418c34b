"""The sync engine proper: one run over a mailbox (fetch, parse, correlate, resolve,
decide, track, record why, move the cursor), folders and their tracking rules, quarantine,
alerts, connector accounts and the outgoing mail it sends.
"""
