"""Security tables: business units, users, teams, security roles, record shares,
field security profiles, API tokens, sign-in throttling and tracking delegates."""
from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import (Boolean, CheckConstraint, Column, ForeignKey, Index, Integer, String,
                        Table, Text, UniqueConstraint)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.db import db, utcnow

team_member = Table(
    "team_member", db.metadata,
    Column("team_id", ForeignKey("team.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", ForeignKey("user.id", ondelete="CASCADE"), primary_key=True, index=True),
)
user_role = Table(
    "user_role", db.metadata,
    Column("user_id", ForeignKey("user.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", ForeignKey("security_role.id", ondelete="CASCADE"), primary_key=True),
)
team_role = Table(
    "team_role", db.metadata,
    Column("team_id", ForeignKey("team.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", ForeignKey("security_role.id", ondelete="CASCADE"), primary_key=True),
)
user_field_profile = Table(
    "user_field_profile", db.metadata,
    Column("user_id", ForeignKey("user.id", ondelete="CASCADE"), primary_key=True),
    Column("profile_id", ForeignKey("field_security_profile.id", ondelete="CASCADE"), primary_key=True),
)
team_field_profile = Table(
    "team_field_profile", db.metadata,
    Column("team_id", ForeignKey("team.id", ondelete="CASCADE"), primary_key=True),
    Column("profile_id", ForeignKey("field_security_profile.id", ondelete="CASCADE"), primary_key=True),
)


class BusinessUnit(db.Model):
    __tablename__ = "business_unit"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(160), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("business_unit.id"), index=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_on: Mapped[datetime] = mapped_column(default=utcnow)

    parent: Mapped[BusinessUnit | None] = relationship(remote_side=[id])


class User(UserMixin, db.Model):
    __tablename__ = "user"
    id: Mapped[int] = mapped_column(primary_key=True)
    first_name: Mapped[str] = mapped_column(String(100), default="")
    last_name: Mapped[str] = mapped_column(String(100), default="")
    full_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    job_title: Mapped[str | None] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(50))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)  # flask-login reads this
    business_unit_id: Mapped[int] = mapped_column(ForeignKey("business_unit.id"), index=True)
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    password_changed_on: Mapped[datetime | None]
    # Bumped on password change and sign-out everywhere: invalidates existing sessions.
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    # Sync alerts by email (sync.admin.alert_mail): which severities (none, errors, warnings),
    # and when the last alert email was queued for this user (the digest's throttle).
    alert_emails: Mapped[str] = mapped_column(String(10), default="errors")
    # The language pages, the pane and mail to this user are in (None: the browser's, else
    # the organization's) and the time zone times are shown in (None: the organization's).
    language: Mapped[str | None] = mapped_column(String(10))
    time_zone: Mapped[str | None] = mapped_column(String(64))
    alerts_emailed_on: Mapped[datetime | None]
    created_on: Mapped[datetime] = mapped_column(default=utcnow)
    modified_on: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    business_unit: Mapped[BusinessUnit] = relationship()
    manager: Mapped[User | None] = relationship(remote_side=[id])
    teams: Mapped[list[Team]] = relationship(secondary=team_member, back_populates="members")
    roles: Mapped[list[Role]] = relationship(secondary=user_role)
    field_profiles: Mapped[list[FieldSecurityProfile]] = relationship(secondary=user_field_profile)

    # The server-side session (``server.security.sessions``) this request runs in: the
    # session loader sets it, sign-in sets it for the new one. Not a column.
    session_key = None

    def get_id(self) -> str:
        """What the session and remember-me cookies carry: the user, the password's session
        version and the server-side session's key (sign-out deletes that session)."""
        return f"{self.id}:{self.session_version}:{self.session_key or ''}"

    # Users are principals and owners, not owned records: their "owning" unit is their own.
    @property
    def owning_business_unit_id(self) -> int:
        return self.business_unit_id

    def __repr__(self) -> str:
        return f"<User {self.email}>"


class Team(db.Model):
    __tablename__ = "team"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(160), unique=True)
    business_unit_id: Mapped[int] = mapped_column(ForeignKey("business_unit.id"), index=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_on: Mapped[datetime] = mapped_column(default=utcnow)

    business_unit: Mapped[BusinessUnit] = relationship()
    members: Mapped[list[User]] = relationship(secondary=team_member, back_populates="teams")
    roles: Mapped[list[Role]] = relationship(secondary=team_role)
    field_profiles: Mapped[list[FieldSecurityProfile]] = relationship(secondary=team_field_profile)

    @property
    def owning_business_unit_id(self) -> int:
        return self.business_unit_id


class Role(db.Model):
    """A security role: a depth per (table, privilege) plus named privileges."""

    __tablename__ = "security_role"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(160), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    is_builtin: Mapped[bool] = mapped_column(Boolean, default=False)

    privileges: Mapped[list[RolePrivilege]] = relationship(
        back_populates="role", cascade="all, delete-orphan")


class RolePrivilege(db.Model):
    """``privilege`` is ``"<table>.<privilege>"`` (e.g. ``account.read``) or a named privilege
    (e.g. ``use_outlook_addin``); ``depth`` is a :class:`server.security.privileges.Depth`."""

    __tablename__ = "role_privilege"
    role_id: Mapped[int] = mapped_column(ForeignKey("security_role.id", ondelete="CASCADE"),
                                         primary_key=True)
    privilege: Mapped[str] = mapped_column(String(80), primary_key=True)
    depth: Mapped[int] = mapped_column(Integer)

    role: Mapped[Role] = relationship(back_populates="privileges")


class RecordShare(db.Model):
    """Access to one record granted to a user or a team beyond what their roles give."""

    __tablename__ = "record_share"
    __table_args__ = (
        CheckConstraint("(user_id IS NULL) <> (team_id IS NULL)", name="one_principal"),
        UniqueConstraint("table_name", "record_id", "user_id", "team_id"),
        Index("ix_record_share_user", "user_id", "table_name"),
        Index("ix_record_share_team", "team_id", "table_name"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    table_name: Mapped[str] = mapped_column(String(40))
    record_id: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    can_read: Mapped[bool] = mapped_column(Boolean, default=True)
    can_write: Mapped[bool] = mapped_column(Boolean, default=False)
    can_append: Mapped[bool] = mapped_column(Boolean, default=False)
    can_append_to: Mapped[bool] = mapped_column(Boolean, default=False)
    can_delete: Mapped[bool] = mapped_column(Boolean, default=False)
    can_assign: Mapped[bool] = mapped_column(Boolean, default=False)
    can_share: Mapped[bool] = mapped_column(Boolean, default=False)
    granted_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_on: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User | None] = relationship(foreign_keys=[user_id])
    team: Mapped[Team | None] = relationship()


class SecuredField(db.Model):
    """A field under field-level security: hidden from whoever no profile grants it to."""

    __tablename__ = "secured_field"
    table_name: Mapped[str] = mapped_column(String(40), primary_key=True)
    field: Mapped[str] = mapped_column(String(80), primary_key=True)


class FieldSecurityProfile(db.Model):
    __tablename__ = "field_security_profile"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(160), unique=True)
    description: Mapped[str | None] = mapped_column(Text)

    permissions: Mapped[list[FieldPermission]] = relationship(
        back_populates="profile", cascade="all, delete-orphan")


class FieldPermission(db.Model):
    __tablename__ = "field_permission"
    profile_id: Mapped[int] = mapped_column(
        ForeignKey("field_security_profile.id", ondelete="CASCADE"), primary_key=True)
    table_name: Mapped[str] = mapped_column(String(40), primary_key=True)
    field: Mapped[str] = mapped_column(String(80), primary_key=True)
    can_read: Mapped[bool] = mapped_column(Boolean, default=False)
    can_update: Mapped[bool] = mapped_column(Boolean, default=False)
    can_create: Mapped[bool] = mapped_column(Boolean, default=False)

    profile: Mapped[FieldSecurityProfile] = relationship(back_populates="permissions")


class ApiToken(db.Model):
    """A bearer token; only its SHA-256 is stored. ``kind`` is ``api`` or ``pane`` (add-in).
    A pane token names the device it was issued to (a digest of the sign-in dialog's device
    cookie), so signing in again there replaces it instead of adding another."""

    __tablename__ = "api_token"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(10), default="api")
    device: Mapped[str | None] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    created_on: Mapped[datetime] = mapped_column(default=utcnow)
    expires_on: Mapped[datetime]
    last_used_on: Mapped[datetime | None]
    revoked_on: Mapped[datetime | None]

    user: Mapped[User] = relationship()


class SignInThrottle(db.Model):
    """Failed sign-ins per key (an email address or a client address), for lockout."""

    __tablename__ = "signin_throttle"
    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_on: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]


class UserSession(db.Model):
    """A signed-in browser session, kept on the server: the cookies carry its key, the row
    the key's digest. Sign-out deletes the row, so a copied cookie stops working; a password
    change deletes them all (``server.security.sessions``)."""

    __tablename__ = "user_session"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    key_digest: Mapped[str] = mapped_column(String(64), unique=True)
    remember: Mapped[bool] = mapped_column(Boolean, default=False)
    created_on: Mapped[datetime] = mapped_column(default=utcnow)
    expires_on: Mapped[datetime]


class SsoLink(db.Model):
    """Which Microsoft Entra account (tenant id + object id, which never change) is which
    CRM user for Office single sign-on. Made once, on the first sign-in, by the token's
    address; after that the address in a token no longer matters (server.security.sso)."""

    __tablename__ = "sso_link"
    tenant_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    object_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), unique=True)
    linked_on: Mapped[datetime] = mapped_column(default=utcnow)


class TrackingDelegate(db.Model):
    """"Who may track on my behalf": ``delegate`` (an assistant with access to ``owner``'s
    mailbox in Outlook) may track items of that mailbox for ``owner``, who then owns the
    activities; the delegate is recorded as the one who tracked them. Set by the owner."""

    __tablename__ = "tracking_delegate"
    __table_args__ = (UniqueConstraint("owner_user_id", "delegate_user_id"),
                      CheckConstraint("owner_user_id <> delegate_user_id", name="not_self"))
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    delegate_user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    created_on: Mapped[datetime] = mapped_column(default=utcnow)
