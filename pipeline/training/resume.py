"""How the train stage treats an existing checkpoint (``--resume``)."""

from __future__ import annotations

from enum import Enum


class Resume(Enum):
    NO = "no"                        # start afresh
    YES = "yes"                      # continue; an error if the checkpoint belongs to other data or params
    IF_COMPATIBLE = "if-compatible"  # continue when it matches, else start afresh (retried orchestrated runs)

    @classmethod
    def of(cls, value: "Resume | bool | str | None") -> "Resume":
        if isinstance(value, Resume):
            return value
        if isinstance(value, str):
            return cls(value)
        return cls.YES if value else cls.NO
