"""Record types shared by every layer of cco (NamedTuple rows and dataclasses, serialised with orjson).

Constants that cheap paths need live here, where importing them costs nothing (a report would
otherwise import schemas.records, whose NamedTuple classes take a millisecond and a half to make).
"""

# Claude Code's model id for messages it makes itself (API error notices): never a billed model.
SYNTHETIC_MODEL = "<synthetic>"
