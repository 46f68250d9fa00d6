"""A bare HTTP/2 client for the gRPC port: frames written and read one by one, so a test knows exactly
which PING the server answered with GOAWAY (a grpc client sends its keep-alive pings on its own timer
and says nothing of how many it sent).

Only what the tests need: the connection preface and SETTINGS (acknowledged both ways), one call
opened with literal HPACK headers (no table, no Huffman), PINGs, and GOAWAY.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, SETTINGS, PING, GOAWAY = 0x0, 0x1, 0x4, 0x6, 0x7
ACK = END_STREAM = 0x1
END_HEADERS = 0x4
ENHANCE_YOUR_CALM = 0xB
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Frame:
    kind: int
    flags: int
    stream: int
    payload: bytes


@dataclass(frozen=True)
class GoAway:
    error_code: int
    debug: bytes


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def literal_header(name: str, value: str) -> bytes:
    """HPACK "literal header field without indexing, new name" (both shorter than 127 bytes)."""
    return b"\x00" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()


class Http2Connection:
    def __init__(self, port: int) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
        self._sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
        self._buffer = b""

    def close(self) -> None:
        self._sock.close()

    def _read_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def read_frame(self) -> Frame:
        """The server's next frame; its SETTINGS and PINGs are acknowledged as they come."""
        header = self._read_exactly(9)
        size, kind, flags = int.from_bytes(header[:3], "big"), header[3], header[4]
        received = Frame(
            kind, flags, int.from_bytes(header[5:], "big") & 0x7FFFFFFF, self._read_exactly(size)
        )
        if kind == SETTINGS and not flags & ACK:
            self._sock.sendall(frame(SETTINGS, ACK, 0))
        elif kind == PING and not flags & ACK:
            self._sock.sendall(frame(PING, ACK, 0, received.payload))
        return received

    def until(self, kind: int, stream: int | None = None) -> Frame | GoAway:
        """Read up to the next frame of `kind` (on `stream`), or the GOAWAY that comes first."""
        while True:
            received = self.read_frame()
            if received.kind == GOAWAY:
                code = int.from_bytes(received.payload[4:8], "big")
                return GoAway(code, received.payload[8:])
            if received.kind == kind and (stream is None or received.stream == stream):
                return received

    def open_call(self, stream: int, path: str, message: bytes) -> None:
        """Send one gRPC request message on a new stream, and end the client's side of it."""
        headers = b"".join(
            literal_header(name, value)
            for name, value in (
                (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "127.0.0.1"),
                ("content-type", "application/grpc"), ("te", "trailers"),
            )
        )  # fmt: skip
        body = b"\x00" + len(message).to_bytes(4, "big") + message
        self._sock.sendall(
            frame(HEADERS, END_HEADERS, stream, headers) + frame(DATA, END_STREAM, stream, body)
        )

    def ping(self, opaque: int) -> Frame | GoAway:
        """One PING; the server's ACK of it, or its GOAWAY."""
        payload = opaque.to_bytes(8, "big")
        self._sock.sendall(frame(PING, 0, 0, payload))
        while True:
            answer = self.until(PING)
            if isinstance(answer, GoAway) or (answer.flags & ACK and answer.payload == payload):
                return answer
