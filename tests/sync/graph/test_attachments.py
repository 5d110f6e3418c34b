"""Outgoing mail with large attachments through the fake Graph service: an attachment over
3 MB leaves the MIME draft and goes up through an upload session in byte ranges (the fake
refuses a range that is out of order, over 4 MiB, not a multiple of 320 KiB before the last,
or sent with an Authorization header); a 10 MB file arrives intact in Sent Items and at the
recipient, small attachments stay in the draft, and a range the service fails is sent again."""
from __future__ import annotations

import random
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from server.sync.engine.accounts import account_for
from server.sync.connectors.base import ConnectorError
from server.sync.connectors.graph_send import GraphSender
from server.sync.connectors.graph_attachments import RANGE_SIZE
from tests.sync.graph.conftest import GraphStore, graph_mailbox

BOB = "bob@org.example"
ANN = "ann@customer.example"
TEN_MB = random.Random(5).randbytes(10_000_000)
SMALL = b"%PDF-1.4 a small quote\n" * 100


@pytest.fixture
def box(app, make_user, graph):
    graph.add_mailbox(ANN)
    return graph_mailbox(GraphStore(graph, BOB), make_user(BOB))


def with_attachments(mid: str) -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = f"Bob <{BOB}>", ANN, "The drawings"
    message["Message-ID"] = f"<{mid}>"
    message.set_content("The drawings are attached.")
    message.add_attachment(TEN_MB, maintype="application", subtype="octet-stream",
                           filename="drawings.bin")
    message.add_attachment(SMALL, maintype="application", subtype="pdf", filename="quote.pdf")
    return message.as_bytes()


def files_of(mime: bytes) -> dict[str, bytes]:
    message = message_from_bytes(mime, policy=policy.default)
    return {part.get_filename(): part.get_payload(decode=True)
            for part in message.iter_attachments()}


def send(box, raw: bytes) -> None:
    with GraphSender(account_for(box, "outgoing")) as sender:
        assert sender.send(raw, BOB, [ANN]) == {}


def test_a_10_mb_attachment_goes_up_in_ranges_and_arrives_intact(graph, box):
    send(box, with_attachments("big@org.example"))
    (sent,) = graph.messages_in(BOB, "Sent Items")
    assert files_of(sent.mime) == {"drawings.bin": TEN_MB, "quote.pdf": SMALL}
    (received,) = graph.messages_in(ANN, "Inbox")
    assert files_of(received.mime)["drawings.bin"] == TEN_MB
    assert received.internet_message_id == "<big@org.example>"
    assert graph.stats["upload_session"] == 1  # the small file stayed in the draft
    ranges = graph.upload_ranges
    assert [status for *_, status in ranges] == [200, 200, 201]
    assert [end - start + 1 for start, end, _ in ranges[:-1]] == [RANGE_SIZE, RANGE_SIZE]
    assert graph.messages_in(BOB, "Drafts") == []


def test_a_range_the_service_failed_is_sent_again(graph, box):
    graph.fail_uploads = 1
    send(box, with_attachments("retried@org.example"))
    statuses = [(start, status) for start, _, status in graph.upload_ranges]
    assert statuses == [(0, 503), (0, 200), (RANGE_SIZE, 200), (2 * RANGE_SIZE, 201)]
    (sent,) = graph.messages_in(BOB, "Sent Items")
    assert files_of(sent.mime)["drawings.bin"] == TEN_MB


def test_an_upload_that_keeps_failing_leaves_no_draft_and_says_why(graph, box):
    graph.fail_uploads = 100
    with pytest.raises(ConnectorError) as caught:
        send(box, with_attachments("failed@org.example"))
    assert caught.value.code == "attachment_upload_failed" and caught.value.retry_after
    assert "drawings.bin" in caught.value.message
    assert graph.messages_in(BOB, "Drafts") == [] and graph.messages_in(BOB, "Sent Items") == []
