"""What the app keeps on disk: Gradio's temp dir of its own, bounded, and the app's output files.

Import this module before gradio: Gradio reads GRADIO_TEMP_DIR and GRADIO_ANALYTICS_ENABLED
when it is imported.
"""

import asyncio
import atexit
import os
import pathlib
import shutil
import tempfile
import time
import uuid

# No usage pings from a local demo.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Gradio stores every upload and answer under GRADIO_TEMP_DIR (default /tmp/gradio, shared by
# all Gradio apps of the machine, read on every request). A directory of this process's own
# lets the app bound, and at exit remove, exactly what it stored, abandoned uploads included.
CACHE_DIR = pathlib.Path(tempfile.mkdtemp(prefix="alexnet_app_cache_",
                                          dir=os.environ.get("GRADIO_TEMP_DIR")))
os.environ["GRADIO_TEMP_DIR"] = str(CACHE_DIR)
atexit.register(shutil.rmtree, CACHE_DIR, ignore_errors=True)

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from starlette.requests import ClientDisconnect  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402

MAX_FILE_SIZE = "10mb"
# What the app keeps on disk (uploads, answers, abandoned partial uploads), oldest deleted
# first; uploads are read at most UPLOADS_AT_ONCE at a time, each one request of one file.
MAX_CACHE_BYTES = 512 * 2**20
MAX_CACHE_FILES = 10_000  # a flood of tiny files would run out of inodes long before bytes
UPLOADS_AT_ONCE = 4
MAX_OUTPUT_FILES = 64  # the app's own PNGs awaiting Gradio's copy (at most 8 are in flight)


def as_file(image, directory, max_age=300, max_files=None):
    """uint8 image -> path of a PNG written atomically (temp name, then rename).

    Why not return the array: Gradio saves arrays to a content-addressed cache file by
    truncating and rewriting it, so two requests that produce the same picture at the same
    moment can serve a half-written file (truncated downloads under 20 concurrent clients).
    Files it copies into its cache atomically, so the app hands it finished files.
    """
    now = time.time()
    kept = []
    for old in directory.glob("*.png"):  # Gradio has its own copy within milliseconds
        try:
            mtime = old.stat().st_mtime
        except FileNotFoundError:  # another request's clean-up took it first
            continue
        if now - mtime > max_age:
            old.unlink(missing_ok=True)
        else:
            kept.append((mtime, old))
    # A burst of requests within max_age: the newest stay (those in flight among them).
    limit = MAX_OUTPUT_FILES if max_files is None else max_files
    for _, old in sorted(kept)[:max(0, len(kept) - limit + 1)]:
        old.unlink(missing_ok=True)
    path = directory / f"{uuid.uuid4().hex}.png"
    staging = directory / f".{path.name}.tmp"
    Image.fromarray(image).save(staging, format="PNG")
    os.replace(staging, path)
    return str(path)


class OutputFiles:
    """Turns a handler's arrays into finished PNG files (see as_file) in a temp directory of
    the app's own (never saved_models/), removed at exit; text passes through."""

    def __init__(self, demo):
        self.demo = demo
        self.directory = pathlib.Path(tempfile.mkdtemp(prefix="alexnet_app_"))
        atexit.register(shutil.rmtree, self.directory, ignore_errors=True)

    def __call__(self, *values):
        if self.demo.is_running:  # answers count against the same bound as uploads
            trim_app_cache(self.demo)
        return tuple(as_file(v, self.directory) if isinstance(v, np.ndarray) else v
                     for v in values)


def trim_cache(directory, max_bytes, keep=(), max_files=None):
    """Deletes the oldest files under `directory` until at most `max_bytes` in at most
    `max_files` files remain, sparing the paths in `keep`; returns the bytes that remain."""
    files = []
    for root, _, names in os.walk(directory):  # os.walk skips what vanishes meanwhile
        for name in names:
            path = os.path.join(root, name)
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            if path not in keep:
                files.append((info.st_mtime, info.st_size, path))
    total, count = sum(size for _, size, _ in files), len(files)
    for _, size, path in sorted(files):
        if total <= max_bytes and (max_files is None or count <= max_files):
            break
        try:
            os.unlink(path)
            if os.path.dirname(path) != os.fspath(directory):
                os.rmdir(os.path.dirname(path))  # Gradio's per-file directory, once empty
        except OSError:  # already gone, or the directory holds other files
            pass
        total, count = total - size, count - 1
    return total


def trim_app_cache(demo):
    """Trims CACHE_DIR so that its files plus the uploads being read fit MAX_CACHE_BYTES (and
    MAX_CACHE_FILES); the files Gradio keeps for the page itself (examples) are spared."""
    keep = set().union(*(getattr(block, "keep_in_cache", ()) for block in demo.blocks.values()))
    room = MAX_CACHE_BYTES - UPLOADS_AT_ONCE * _upload_limit(demo)
    return trim_cache(CACHE_DIR, room, keep, MAX_CACHE_FILES)


def _upload_limit(demo):
    return (demo.max_file_size or 0) + 64 * 1024  # the file and its form fields


class UploadBound:
    """ASGI middleware in front of Gradio's upload route, which bounds each file's size but
    not the files per request (up to 1000), the uploads read at once, or what stays stored
    (a client that drops the connection mid-upload leaves its partial file behind for good).

    Here every upload request is read only while one of UPLOADS_AT_ONCE slots is free, its
    body may hold one file of at most max_file_size (413 beyond), and before it is read the
    app's files are trimmed, oldest first, to leave room for it within MAX_CACHE_BYTES.
    """

    def __init__(self, app, demo):
        self.app, self.demo = app, demo
        self.slots = asyncio.Semaphore(UPLOADS_AT_ONCE)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" \
                or not scope["path"].endswith("/upload"):
            return await self.app(scope, receive, send)
        limit = _upload_limit(self.demo)
        received, started = 0, False

        async def bounded_receive():
            nonlocal received
            if received > limit:
                return {"type": "http.disconnect"}  # Gradio stops reading (ClientDisconnect)
            message = await receive()
            received += len(message.get("body", b""))
            return {"type": "http.disconnect"} if received > limit else message

        async def watched_send(message):
            nonlocal started
            started = True
            await send(message)

        async with self.slots:
            await asyncio.to_thread(trim_app_cache, self.demo)
            try:
                await self.app(scope, bounded_receive, watched_send)
            except ClientDisconnect:
                if received <= limit or started:
                    raise
            if received > limit and not started:
                await PlainTextResponse(f"An upload is one file of at most {MAX_FILE_SIZE}.",
                                        status_code=413)(scope, receive, send)
