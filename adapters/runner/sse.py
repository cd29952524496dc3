"""SSE framing: bytes in, ``httpx_sse.ServerSentEvent``s out, each event capped in size.

The field parsing is httpx-sse's own ``SSEDecoder`` (WHATWG rules: ``data`` lines joined with
``\\n``, one leading space dropped, comments and unknown fields ignored). What it does not do is
done here, before it sees a line: splitting bytes into lines in bulk (one ``split`` per read,
not a Python step per byte), normalising ``\\r\\n`` and ``\\r``, and refusing an event larger
than the cap before it is buffered whole. A stream's last event is dispatched even without its
closing blank line, provided its last line was complete (a line cut by the end of the stream
is dropped, as the spec says).
"""

from __future__ import annotations

from typing import TypeAlias

from httpx_sse import ServerSentEvent
from httpx_sse._decoders import SSEDecoder

Event: TypeAlias = str | ServerSentEvent
"""An event as ``EventReader`` returns it: a ``message`` event's data (maybe empty), or the
``ServerSentEvent`` of any other type (``ping``, ``stopping``, ...)."""


class EventTooLarge(Exception):
    """An event grew past the reader's ``max_event_bytes``."""


class EventReader:
    """An incremental ``text/event-stream`` reader on bytes; ``comments`` counts the comment
    lines (keep-alives) of reads that completed no event.

    An event's size is the bytes of its lines with their line ends (LF-normalised); one over
    ``max_event_bytes`` raises ``EventTooLarge``.
    """

    __slots__ = (
        "_cr",
        "_decode",
        "_max",
        "_open",
        "_partial",
        "_parts",
        "_typed",
        "comments",
        "plain",
    )

    def __init__(self, max_event_bytes: int) -> None:
        self._max = max_event_bytes
        self._decode = SSEDecoder().decode
        self._cr = False
        self._parts: list[bytes] = []  # an incomplete line, as it arrived
        self._partial = 0
        self._open = 0  # bytes of the complete lines of the event in progress
        self._typed = False  # an event field line may be in the event in progress
        self.comments = 0
        self.plain = False
        """Every event the last ``feed`` returned is a message (its data, a ``str``)."""

    def feed(self, chunk: bytes) -> list[Event]:
        """The events that ``chunk`` completes."""
        if self._cr:
            chunk = b"\r" + chunk
            self._cr = False
        if chunk.endswith(b"\r"):  # may be the first half of \r\n: decide with the next chunk
            self._cr = True
            chunk = chunk[:-1]
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = chunk.rfind(b"\n") + 1
        if not end:
            self._keep(chunk)
            self.plain = True  # no event at all
            return []
        if self._parts:  # finish the line a previous read left open
            self._parts.append(chunk[:end])
            lines = b"".join(self._parts)
            self._parts = []
            self._partial = 0
        else:
            lines = chunk[:end] if end < len(chunk) else chunk
        self._measure(lines)
        if end < len(chunk):
            self._keep(chunk[end:])
        return self._events(lines)

    def finish(self) -> list[Event]:
        """End of stream: dispatch a pending event whose lines were all complete."""
        events: list[Event] = []
        self.plain = False
        if self._cr:  # a final lone \r ended a line
            self._cr = False
            events.extend(self.feed(b"\n"))
        if self._parts:
            self._parts = []
            return events
        last = self._decode("")
        if last is not None:
            events.append(last.data if last.event == "message" else last)
        return events

    def _keep(self, partial: bytes) -> None:
        self._parts.append(partial)
        self._partial += len(partial)
        if self._open + self._partial > self._max:
            raise EventTooLarge

    def _measure(self, lines: bytes) -> None:
        """Raise if an event in ``lines`` (complete lines, LF-ended) is over the cap."""
        if lines[:1] == b"\n":  # a blank line first: the open event ended before this read
            self._open = 0
        if self._open + len(lines) > self._max:  # else nothing in ``lines`` can be too large
            # Event boundaries are a line end then a blank line; each piece between them is an
            # event's lines joined by \n, so with its last line end it is the event's size.
            # (More blank lines in a row leave line ends at the front of a piece: not counted.)
            pieces = lines.split(b"\n\n")
            sizes = [len(piece.lstrip(b"\n")) + 1 for piece in pieces[:-1]]
            if sizes:
                sizes[0] += self._open
                if max(sizes) > self._max:
                    raise EventTooLarge
        cut = lines.rfind(b"\n\n")
        if cut >= 0:
            self._open = len(lines) - cut - 2  # the lines after the last blank line
        else:
            self._open += len(lines) - (lines[:1] == b"\n")
        if self._open > self._max:
            raise EventTooLarge

    def _plain(self, lines: bytes) -> bool:
        """No ``event`` field line is in ``lines`` nor still open from an earlier read; keeps
        track of whether one is open after ``lines`` (a rough test: it may say open wrongly)."""
        typed = lines.rfind(b"\nevent")
        if typed < 0 and lines.startswith(b"event"):
            typed = 0
        was_open = self._typed
        if typed >= 0:
            self._typed = typed > lines.rfind(b"\n\n")  # after the last blank line: open
        elif was_open and (b"\n\n" in lines or lines.startswith(b"\n")):
            self._typed = False  # the open event ends in this read
        return typed < 0 and not was_open

    def _events(self, lines: bytes) -> list[Event]:
        split = lines.decode("utf-8", "replace").split("\n")  # no \n inside a UTF-8 sequence
        split.pop()  # the empty string after the last line end
        events: list[Event]
        self.plain = self._plain(lines)
        if self.plain:  # the hot path: no event can have a type, all are messages
            events = [event.data for event in map(self._decode, split) if event is not None]
        else:  # a message event becomes its data at once, so its ServerSentEvent is freed
            events = [
                event.data if event.event == "message" else event
                for event in map(self._decode, split)
                if event is not None
            ]
        if not events:  # with events, the read is activity anyway: no need to count
            self.comments += lines.count(b"\n:") + lines.startswith(b":")
        return events
