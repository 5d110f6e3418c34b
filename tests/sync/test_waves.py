"""The waves of a batch (``server.sync.engine.items.next_wave``), for generated batches: every
message comes in exactly one wave, in batch order, and a message that depends on an earlier
one (answers it, is a copy of it, shares its tracking token, conversation or smart-matching
key) comes in a later wave than it."""
from __future__ import annotations

import base64
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from server.sync.connectors.base import FetchedMessage
from server.sync.engine.items import next_wave, parsed
from tests.sync.conftest import build_raw

GUIDS = [bytes([n]) * 16 for n in range(3)]


def _thread_index(guid: bytes, replies: int) -> str:
    return base64.b64encode(b"\x01" + b"\x00" * 5 + guid + b"\x00\x00\x00\x00\x01" * replies).decode()


message = st.fixed_dictionaries({
    "mid": st.integers(0, 7),  # a small range: copies happen
    "in_reply_to": st.none() | st.integers(0, 7),
    "references": st.lists(st.integers(0, 7), max_size=3),
    "token": st.none() | st.sampled_from(["CRM:0000001", "CRM:0000002"]),
    "conversation": st.none() | st.tuples(st.integers(0, 2), st.integers(0, 2)),
    "subject": st.sampled_from(["Quote", "Delivery", "Invoice"]),
})


def _raw(spec: dict) -> bytes:
    headers = {"Message-ID": f"<m{spec['mid']}@x.example>",
               "Subject": f"RE: {spec['subject']} {spec['token'] or ''}".strip()}
    if spec["in_reply_to"] is not None:
        headers["In-Reply-To"] = f"<m{spec['in_reply_to']}@x.example>"
    if spec["references"]:
        headers["References"] = " ".join(f"<m{n}@x.example>" for n in spec["references"])
    if spec["conversation"] is not None:
        guid, replies = spec["conversation"]
        headers["Thread-Index"] = _thread_index(GUIDS[guid], replies)
    return build_raw(headers=headers)


def _depends(later: dict, earlier: dict, smart: bool) -> bool:
    asks = {later["mid"], later["in_reply_to"], *later["references"]}
    return (earlier["mid"] in asks
            or (later["token"] is not None and later["token"] == earlier["token"])
            or (later["conversation"] is not None and earlier["conversation"] is not None
                and later["conversation"][0] == earlier["conversation"][0])
            or (smart and later["subject"] == earlier["subject"]))


@settings(max_examples=200, deadline=None)
@given(specs=st.lists(message, min_size=1, max_size=12), smart=st.booleans())
def test_a_message_comes_in_a_later_wave_than_every_earlier_message_it_depends_on(specs, smart):
    ctx = SimpleNamespace(org=SimpleNamespace(tracking_token_prefix="CRM:", smart_matching=smart))
    items = [parsed(index, FetchedMessage(ref=str(index), raw=_raw(spec)), ctx)
             for index, spec in enumerate(specs)]
    waves, left = [], items
    while left:
        wave, left = next_wave(ctx, left)
        assert wave, "every call makes progress"
        assert [i.index for i in wave] == sorted(i.index for i in wave)
        waves.append(wave)
    wave_of = {item.index: n for n, wave in enumerate(waves) for item in wave}
    assert sorted(wave_of) == list(range(len(specs)))
    for later in range(len(specs)):
        for earlier in range(later):
            if _depends(specs[later], specs[earlier], smart):
                assert wave_of[earlier] < wave_of[later], (earlier, later)
