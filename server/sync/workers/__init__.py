"""What runs the engine over time: the worker loop, the schedule of due mailboxes and
leases between workers, and push (IMAP IDLE/NOTIFY, Maildir, EWS streaming, Graph
change notifications).
"""
