"""The chat protocol, shared by the widget (shipped to the browser) and the server.

Pure Python in the MicroPython subset: no I/O, no clock, no imports from ``js``, ``pyscript``,
``server`` or ``widget``. ``frames`` builds and checks frames, ``close`` holds the close codes and
the failure classes, ``ratelimit`` the token bucket both sides meter messages with.
docs/protocol.md is checked against these modules by tests/test_protocol_doc.py.
"""
