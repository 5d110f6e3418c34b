"""Tracking delegates: a user's own list of who may track on their behalf (an assistant who
opens their mailbox in Outlook as a shared folder or shared mailbox). Only the owner changes
the list; the add-in asks ``acting_for`` before it tracks an item of someone else's mailbox
for them.
"""
from __future__ import annotations

from sqlalchemy import func, select

from server.db import db
from server.errors import Forbidden, Invalid, NotFound
from server.i18n import N_
from server.security.models import TrackingDelegate, User


def delegates_of(owner: User) -> list[User]:
    """Who may track on ``owner``'s behalf, by name."""
    return list(db.session.scalars(
        select(User).join(TrackingDelegate, TrackingDelegate.delegate_user_id == User.id)
        .where(TrackingDelegate.owner_user_id == owner.id).order_by(User.full_name, User.id)))


def allow(owner: User, email: str) -> User:
    """Let the active user with this email track on ``owner``'s behalf (idempotent)."""
    email = (email or "").strip().lower()
    delegate = db.session.scalar(select(User).where(func.lower(User.email) == email,
                                                    User.is_active.is_(True))) if email else None
    if delegate is None:
        raise Invalid(N_("No active user has that email address."), {"email": N_("Not a user of this CRM.")})
    if delegate.id == owner.id:
        raise Invalid(N_("You track your own mail already."), {"email": N_("That is you.")})
    if db.session.scalar(select(TrackingDelegate.id).where(
            TrackingDelegate.owner_user_id == owner.id,
            TrackingDelegate.delegate_user_id == delegate.id)) is None:
        db.session.add(TrackingDelegate(owner_user_id=owner.id, delegate_user_id=delegate.id))
        db.session.flush()
    return delegate


def remove(owner: User, delegate_id: int) -> None:
    row = db.session.scalar(select(TrackingDelegate).where(
        TrackingDelegate.owner_user_id == owner.id, TrackingDelegate.delegate_user_id == delegate_id))
    if row is None:
        raise NotFound(N_("That person may not track on your behalf anyway."))
    db.session.delete(row)
    db.session.flush()


def acting_for(delegate: User, owner_address: str | None) -> User | None:
    """The user whose mailbox ``delegate`` is tracking from: None for their own mailbox (no
    owner address, or their own), else that owner when they allowed ``delegate``;
    Forbidden when they did not (or the address is no active user's)."""
    address = (owner_address or "").strip().lower()
    if not address or address == (delegate.email or "").lower():
        return None
    owner = db.session.scalar(select(User).where(func.lower(User.email) == address, User.is_active.is_(True)))
    allowed = owner is not None and db.session.scalar(select(TrackingDelegate.id).where(
        TrackingDelegate.owner_user_id == owner.id,
        TrackingDelegate.delegate_user_id == delegate.id)) is not None
    if not allowed:
        raise Forbidden("This mailbox's owner has not allowed you to track on their behalf. "
                        "They can add you under \"Who may track on my behalf\" on their profile.")
    return owner
