"""Operator actions on one message, shared by every backend: each backend
supplies `_move` (a guarded state change), these say which moves exist."""

from __future__ import annotations

from typing import Protocol

from spool.base import Message, State

CANCELLABLE = (State.NONE, State.TO_PROCESS, State.UNCONFIRMED)
RELEASABLE = (State.NONE, State.UNCONFIRMED)


class _Mover(Protocol):
    async def _move(self, tenant: int | None, message_id: int, allowed: tuple[State, ...],
                    to: State, note: str, action: str) -> Message: ...


class OperatorActions:
    async def cancel_message(self: _Mover, tenant: int | None, message_id: int) -> Message:
        return await self._move(tenant, message_id, CANCELLABLE, State.CANCELLED, "cancelled",
                                "cancel")

    async def release_message(self: _Mover, tenant: int | None, message_id: int) -> Message:
        return await self._move(tenant, message_id, RELEASABLE, State.TO_PROCESS, "released",
                                "release")
