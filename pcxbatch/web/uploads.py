"""A streamed ``multipart/form-data`` upload, written to disk as it arrives (python-multipart).

In: the request body as an async stream of chunks, its ``Content-Type`` and
``Content-Length``, the folder to write into and the size limit. Out: an :class:`Upload`: the
file under a generated name (``upload-<random><suffix>``: the sender's name is kept only as
text, never used as a path), its SHA-256 and size, and the small text fields beside it.
:class:`TooLarge` when the declared length (before anything is stored) or the bytes received
pass the limit; :class:`BadUpload` for a body that is not such a form.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.multipart import MultipartParser, parse_options_header

#: The form's text fields: how many, and how long each may be.
MAX_FIELDS, MAX_FIELD_BYTES = 20, 4096
#: Room for the form's own boundaries and fields on top of the file's limit.
FORM_OVERHEAD = 64 * 1024
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,5}$")


class TooLarge(Exception):
    """The upload is over the size limit."""


class BadUpload(Exception):
    """The request is not a usable upload form; ``str()`` says why in one line."""


@dataclass
class Upload:
    """What arrived: the file (None when the form had none) and the form's text fields."""

    path: Path | None = None
    name: str = ""
    sha256: str = ""
    size: int = 0
    fields: dict[str, str] = field(default_factory=dict)


def generated_path(folder: Path, suffix: str) -> Path:
    """A new file's path in ``folder`` under a generated name (``upload-<random><suffix>``):
    uploads, and the inputs the server makes for retries and undos, are kept alike."""
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"upload-{secrets.token_hex(12)}{suffix}"


class _Receiver:
    """python-multipart's callbacks: one part at a time, the file's bytes straight to disk."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder, self.max_bytes = folder, max_bytes
        self.upload = Upload()
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name = ""
        self._text = bytearray()
        self._out: IO[bytes] | None = None
        self._hash = hashlib.sha256()

    def on_part_begin(self) -> None:
        self._headers, self._name, self._text = {}, "", bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field, self._header_value = b"", b""

    def on_headers_finished(self) -> None:
        _kind, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options and self._name == "file":
            if self.upload.path is not None:
                raise BadUpload("send one file per upload")
            filename = options[b"filename"].decode("utf-8", "replace")
            self.upload.name = Path(filename.replace("\\", "/")).name[:200]
            found = _SUFFIX.search(self.upload.name)
            suffix = found.group().lower() if found else ""
            self.upload.path = generated_path(self.folder, suffix)
            self._out = self.upload.path.open("xb")
        elif len(self.upload.fields) >= MAX_FIELDS:
            raise BadUpload("too many form fields")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._out is not None:
            self.upload.size += len(chunk)
            if self.upload.size > self.max_bytes:
                raise TooLarge()
            self._hash.update(chunk)
            self._out.write(chunk)
            return
        self._text += chunk
        if len(self._text) > MAX_FIELD_BYTES:
            raise BadUpload(f"the form field {self._name!r} is too long")

    def on_part_end(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
            self.upload.sha256 = self._hash.hexdigest()
        elif self._name:
            self.upload.fields[self._name] = self._text.decode("utf-8", "replace")

    def discard(self) -> None:
        """Remove what was written of the file (the upload was refused)."""
        if self._out is not None:
            self._out.close()
        if self.upload.path is not None:
            self.upload.path.unlink(missing_ok=True)


async def receive(
    chunks: AsyncIterator[bytes],
    content_type: str,
    content_length: str | None,
    folder: Path,
    max_bytes: int,
) -> Upload:
    """Stream a multipart form into ``folder``; :class:`TooLarge` before storing anything when
    the declared length is over ``max_bytes`` (plus the form's overhead)."""
    declared = int(content_length) if content_length and content_length.isdigit() else 0
    if declared > max_bytes + FORM_OVERHEAD:
        raise TooLarge()
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise BadUpload("send the file as multipart/form-data (a form with a file field)")
    receiver = _Receiver(folder, max_bytes)
    callbacks = {name: getattr(receiver, name) for name in dir(receiver) if name.startswith("on_")}
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        async for chunk in chunks:
            parser.write(chunk)
        parser.finalize()
    except BaseException as exc:
        receiver.discard()
        if isinstance(exc, TooLarge | BadUpload):
            raise
        if isinstance(exc, Exception):
            raise BadUpload(f"the upload could not be read ({type(exc).__name__})") from None
        raise
    return receiver.upload
