"""Loop-side event buffers for subscribers (SSE streams, embedded turns).

An actor never waits on a subscriber: it posts each event to the subscriber's loop with
``call_soon_threadsafe``. A subscriber whose buffer is full gets one final ``RESET``
marker and nothing more, so a slow client never slows the actor; it reconnects with
``Last-Event-ID`` and replays what it missed.
"""

from __future__ import annotations

import asyncio
from typing import Final

from greenroom.models import STREAM_CLOSED, STREAM_RESET, Event

RESET: Final = STREAM_RESET
CLOSED: Final = STREAM_CLOSED


class EventStream:
    """A bounded buffer of events, touched only on its loop.

    Args:
        maxsize: events buffered before the subscriber is reset.

    Raises:
        ValueError: ``maxsize`` is not positive.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        # One extra slot so the RESET/CLOSED marker always fits.
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize + 1)
        self.ended = False

    def deliver(self, event: Event) -> None:
        """Buffer ``event``; past the bound, end the stream with RESET."""
        if self.ended:
            return
        if self.queue.qsize() >= self.maxsize:
            self.ended = True
            self.queue.put_nowait(RESET)
            return
        self.queue.put_nowait(event)

    def close(self, marker: Event = CLOSED) -> None:
        """End the stream with ``marker`` (session passivated for shutdown, say)."""
        if not self.ended:
            self.ended = True
            self.queue.put_nowait(marker)

    async def get(self) -> Event:
        """The next event (RESET or CLOSED end the stream)."""
        return await self.queue.get()
