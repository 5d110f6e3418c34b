"""EWS errors: exchangelib's exceptions as ``ConnectorError``s whose severity and words say
what to fix (``translated``), and an error's words without the XML exchangelib quotes."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from exchangelib.errors import (AutoDiscoverFailed, ErrorAccessDenied, ErrorFolderNotFound,
                                ErrorImpersonateUserDenied, ErrorItemNotFound,
                                ErrorNonExistentMailbox, ErrorServerBusy, EWSError,
                                RedirectError, TransportError, UnauthorizedError)
from requests.exceptions import RequestException

from server.sync.connectors.base import Account, ConnectorError


@contextmanager
def translated(what: str, where: str, account: Account, *, oauth: bool,
               app_only: bool) -> Iterator[None]:
    """exchangelib's exceptions raised inside as ``ConnectorError``s with a severity
    (``what``: what the connector was doing; ``where``: the server, for messages)."""
    try:
        yield
    except ConnectorError:
        raise
    except UnauthorizedError:
        who = account.username or account.address
        if oauth:
            fix = ("grant the app the full_access_as_app permission of Office 365 Exchange "
                   "Online with admin consent" if app_only else
                   "connect the mailbox again (its sign-in was withdrawn or expired)")
            raise ConnectorError("auth_failed", f"{where} refused the access token for "
                                 f"{account.address}: {fix}.", severity="auth") from None
        raise ConnectorError("auth_failed", f"{where} refused the password for {who}.",
                             severity="auth") from None
    except ErrorImpersonateUserDenied:
        fix = ("grant the app the full_access_as_app permission of Office 365 Exchange Online "
               "with admin consent" if app_only else "give the service account the "
               "ApplicationImpersonation role")
        who = "the app" if app_only else account.username
        raise ConnectorError("impersonation_denied", f"{where} does not let {who} act for "
                             f"{account.address}: {fix}.", severity="auth") from None
    except ErrorNonExistentMailbox:
        raise ConnectorError("no_mailbox", f"{where} has no mailbox "
                             f"{account.address}.", severity="auth") from None
    except ErrorAccessDenied:
        raise ConnectorError("access_denied", f"{where} denied access to "
                             f"{account.address} while {what}: check the account's "
                             "permissions on this mailbox.", severity="auth") from None
    except ErrorServerBusy as exc:
        wait = float(exc.back_off or 60)
        raise ConnectorError("server_busy", f"{where} is busy (throttled) while {what}; it "
                             f"asked to wait {wait:.0f} seconds.", severity="mailbox",
                             retry_after=wait) from None
    except ErrorItemNotFound:
        raise ConnectorError("message_not_found", f"A message is no longer there while "
                             f"{what}.", severity="message") from None
    except ErrorFolderNotFound:
        raise ConnectorError("folder_not_found", f"A folder is no longer there while "
                             f"{what}.", severity="folder") from None
    except AutoDiscoverFailed as exc:
        raise ConnectorError("autodiscover_failed", f"Autodiscover found no EWS endpoint for "
                             f"{account.address} ({exc}): enter the EWS URL in the "
                             "server profile.", severity="mailbox", retry_after=300) from None
    except RedirectError as exc:
        raise ConnectorError("redirected", f"{where} redirected the request ({exc}): check "
                             "the EWS URL.", severity="mailbox", retry_after=300) from None
    except (RequestException, OSError) as exc:
        raise ConnectorError("connection_lost", f"The connection to {where} failed while "
                             f"{what} ({type(exc).__name__}).", severity="mailbox",
                             retry_after=60) from None
    except TransportError as exc:  # includes other per-response errors
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, (RequestException, OSError)):
            # exchangelib re-raises a broken connection as a TransportError
            raise ConnectorError("connection_lost", f"The connection to {where} failed while "
                                 f"{what} (connection lost).", severity="mailbox",
                                 retry_after=60) from None
        if isinstance(exc.__context__, ErrorServerBusy):
            # exchangelib's version probe reports a busy server as "no version headers"
            busy = exc.__context__
            wait = float(busy.back_off or 60)
            raise ConnectorError("server_busy", f"{where} is busy (throttled) while {what}; "
                                 f"it asked to wait {wait:.0f} seconds.", severity="mailbox",
                                 retry_after=wait) from None
        raise ConnectorError("ews_error", f"{where} answered an error while {what}: "
                             f"{detail(exc)}", severity="mailbox", retry_after=60) from None
    except EWSError as exc:
        raise ConnectorError("ews_error", f"{where} answered an error while {what}: "
                             f"{detail(exc)}", severity="mailbox", retry_after=60) from None


def detail(exc: BaseException) -> str:
    """The error's words without the XML exchangelib quotes in some (it may hold mail)."""
    text = str(exc)
    if "<" in text:
        text = text.split("<", 1)[0].rstrip(" ({:")
    return (text or type(exc).__name__)[:300]
