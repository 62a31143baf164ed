"""docs/ARCHITECTURE.md's per-message table ("Every message, in one hop") is
the one contrib/message_table.py makes from the sources, and every message
of every internal schema is sent by someone and handled somewhere."""
from __future__ import annotations

from contrib.message_table import document_section, generate, scan


def test_every_message_has_a_sender_and_a_handler():
    schemas, sites = scan()
    missing = [(schema, name, "sender" if not sites[name].sent else "handler")
               for schema, msgs in schemas.items() for name, _ in msgs
               if not sites[name].sent or not sites[name].handled]
    assert missing == []


def test_the_document_lists_every_message_as_the_sources_say():
    assert document_section() == generate(), \
        "docs/ARCHITECTURE.md is out of date: run `python -m contrib.message_table --write`"
