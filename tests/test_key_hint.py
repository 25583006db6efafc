"""Key hints reveal little of any key, old hints are made safe on load, unsendable keys are
refused by keys.json validation. Pure."""

from __future__ import annotations

import random
import string

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.keys import (
    KeyFile,
    KeyFileEntry,
    KeyRecord,
    hash_api_key,
    key_hint,
    new_api_key,
    new_key_id,
)

SENDABLE = "".join(chr(c) for c in range(0x21, 0x7F))
keys = st.text(alphabet=SENDABLE, min_size=8, max_size=64)


def old_hint(api_key: str) -> str:
    """The first rule's hint, as records stored before this change hold it."""
    return f"{api_key[:8]}…{api_key[-4:]}"


def random_key(length: int, seed: int) -> str:
    return "".join(random.Random(seed).choices(string.ascii_letters + string.digits, k=length))


def assert_reveals_little(api_key: str, hint: str) -> None:
    head, tail = hint.split("…")
    assert api_key.startswith(head) and api_key.endswith(tail)
    shown = len(head) + len(tail)
    assert shown * 8 <= 3 * len(api_key) and shown <= 11 and api_key not in hint
    assert len(head) < 8, "the old 8…4 shape"


@given(keys)
def test_a_hint_shows_at_most_3_8ths_of_a_key_and_is_stable(api_key: str):
    hint = key_hint(api_key)
    assert_reveals_little(api_key, hint)
    assert key_hint(api_key) == hint


@pytest.mark.parametrize("length", range(8, 65))
def test_every_length_from_8_to_64(length: int):
    api_key = random_key(length, length)
    assert_reveals_little(api_key, key_hint(api_key))


def test_a_generated_key_shows_its_prefix_3_more_and_the_last_4():
    api_key = new_api_key()
    assert key_hint(api_key) == f"{api_key[:7]}…{api_key[-4:]}"


@pytest.mark.parametrize("length", [1, 3, 5, 7, 8, 9, 10, 11, 12])
def test_an_old_hint_that_gave_the_key_away_is_replaced_by_the_new_one(length: int):
    api_key = random_key(length, 100 + length)
    record = KeyRecord(key_hash=hash_api_key(api_key), user_id="u", key_hint=old_hint(api_key))
    head, tail = api_key[: length // 4], api_key[len(api_key) - length // 8 :]
    assert record.key_hint == f"{head}…{tail}"


def test_old_hints_are_fixed_wherever_records_are_read():
    """From Redis, from a keys.json entry in hashed form, and on the way back to the file."""
    api_key = random_key(12, 1)
    key_hash = hash_api_key(api_key)
    stored = {"user_id": "u", "key_hint": old_hint(api_key)}
    from_redis = KeyRecord.from_redis(key_hash, orjson.dumps(stored))
    entry = {"api_key_sha256": key_hash, **stored}
    (from_file,) = KeyFile.model_validate({"keys": [entry]}).to_records()
    rendered = KeyFile.render([from_redis]).decode()
    for text in (from_redis.key_hint, from_file.key_hint, rendered, from_redis.to_redis().decode()):
        assert f"{api_key[:3]}…{api_key[-1:]}" in text and api_key[:8] not in text


def test_an_old_hint_of_a_longer_key_with_a_derived_id_shows_3_and_1():
    """An upserted or hand-written key of unknown length: cut to what a 13-character key
    would show (the shortest key the old hint did not give away whole)."""
    api_key = random_key(20, 2)
    record = KeyRecord(key_hash=hash_api_key(api_key), user_id="u", key_hint=old_hint(api_key))
    assert record.key_hint == f"{api_key[:3]}…{api_key[-1:]}"


def test_an_old_hint_of_a_generated_key_gets_the_new_generated_form():
    api_key = new_api_key()
    record = KeyRecord(
        key_hash=hash_api_key(api_key),
        key_id=new_key_id(),
        user_id="u",
        key_hint=old_hint(api_key),
    )
    assert record.key_hint == f"{api_key[:7]}…{api_key[-4:]}"


def test_an_old_hint_with_a_hand_chosen_id_is_not_taken_for_a_generated_key():
    api_key = "bsk-" + random_key(12, 3)
    record = KeyRecord(
        key_hash=hash_api_key(api_key),
        key_id="alice-laptop",
        user_id="u",
        key_hint=old_hint(api_key),
    )
    assert record.key_hint == f"{api_key[:3]}…{api_key[-1:]}"


@given(keys)
def test_new_hints_are_kept_as_they_are(api_key: str):
    hint = key_hint(api_key)
    record = KeyRecord(key_hash=hash_api_key(api_key), user_id="u", key_hint=hint)
    assert record.key_hint == hint and KeyRecord(**record.model_dump()).key_hint == hint
    assert_reveals_little(api_key, record.key_hint)


@pytest.mark.parametrize(
    "api_key",
    [
        "bsk-clé-secrète",
        " bsk-padded-0001",
        "bsk-padded-0001 ",
        "bsk-in side",
        "bsk-\x07bell",
        "\tbsk",
    ],
)
def test_keys_json_refuses_a_key_no_header_can_carry_without_quoting_it(api_key: str):
    document = {"keys": [{"api_key": "bsk-fine-00001", "user_id": "a"}]}
    document["keys"].append({"api_key": api_key, "user_id": "b"})
    with pytest.raises(ValidationError) as caught:
        KeyFile.model_validate(document)
    message = str(caught.value)
    assert "keys.1.api_key" in message and "printable ASCII" in message
    assert api_key not in message and api_key.strip() not in message
    with pytest.raises(ValidationError):
        KeyFileEntry(api_key=api_key, user_id="b")
