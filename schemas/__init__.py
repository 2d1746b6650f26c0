"""Record types shared by every layer of cco (plain dataclasses, serialised with orjson)."""
