"""Helpers shared by the identity tests (a uniquely named module: tests/ has several conftest.py)."""

from __future__ import annotations

from pathlib import Path

from identity.face.image import ImageLimits

FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"
LIMITS = ImageLimits(max_bytes=4 * 1024 * 1024, max_pixels=16_000_000, max_side=640)


def face_bytes(name: str) -> bytes:
    return (FACES / name).read_bytes()


class LoopbackServer:
    """uvicorn serving an ASGI app on a free 127.0.0.1 port, in a thread."""

    def __init__(self, app: object) -> None:
        import socket
        import threading

        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> LoopbackServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("sandbox server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def challenge_frames(frames: dict[str, bytes], steps: list[str]) -> list[bytes]:
    """Frames that perform ``steps`` (blink / turn_left / turn_right) in order, from real photos:
    obama_1 frontal between the moves, obama_1 with eyes painted shut, obama_4 (turned to his
    left), obama_2 (turned to his right)."""
    moves = {"blink": "closed", "turn_left": "left", "turn_right": "right", "left": "left", "right": "right"}
    out = [frames["front"]]
    for step in steps:
        out += [frames[moves[step]], frames["front"]]
    return out


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, followed by a few bytes of pixel data only."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
