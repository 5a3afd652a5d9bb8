"""Reading untrusted files within bounds, and showing untrusted names safely.

Every file netsummary reads by name (a JSON summary, a ``pyproject.toml``, a checkpoint) comes
through :func:`regular_file_size` or :func:`read_regular`: anything that is not a regular file
(a FIFO, ``/dev/zero``, a socket) is refused without being read, and a file over its size limit
is refused before it is read. Every name that comes from a file and is printed goes through
:func:`shown` (or :func:`escape`): control characters become visible escapes, so a tensor name
cannot clear the terminal or forge a row.

>>> escape("fc\\nTotal 999,999,999")
'fc\\\\nTotal 999,999,999'
>>> escape("\\x1b[2Jx"), escape("a\\u2028b"), escape("ok.weight")
('\\\\x1b[2Jx', 'a\\\\u2028b', 'ok.weight')
>>> shorten("a." * 50 + "weight", 20)
'a.a.a.a.a.….a.weight'
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable

MiB = 2**20
MAX_JSON_BYTES = 64 * MiB  # a summary saved with --format json, a sharded checkpoint's index
MAX_TOML_BYTES = 1 * MiB  # a pyproject.toml

# C0 and C1 controls, DEL, lone surrogates (unprintable, and unencodable as UTF-8), the line and
# paragraph separators, and the bidirectional overrides that reorder what a terminal shows.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape(text: str) -> str:
    """``text`` with every control character written as an escape (``\\n``, ``\\x1b``, ``\\u2028``);
    printable text, non-ASCII letters included, is unchanged. Idempotent."""
    return text if _UNSAFE.search(text) is None else _UNSAFE.sub(_escape_char, text)


_MARKDOWN = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", "`": "\\`"})


def markdown_cell(text: str) -> str:
    """``text`` as GitHub Markdown table-cell (or heading) text that shows as written: control
    characters escaped (see :func:`escape`), ``&``, ``<`` and ``>`` as entities, so that no name
    is raw HTML in a pull-request comment, ``|`` as ``\\|``, so that no name adds a column, and a
    backtick as ``\\```, so that none opens a code span (where an entity would show as written).
    Ordinary names are unchanged.

    >>> markdown_cell("<img src=x onerror=alert(1)>"), markdown_cell("a|b & c"), markdown_cell("fc1 (Linear)")
    ('&lt;img src=x onerror=alert(1)&gt;', 'a\\\\|b &amp; c', 'fc1 (Linear)')
    """
    return escape(text).translate(_MARKDOWN)


def markdown_code(text: str) -> str:
    """``text`` as a GitHub Markdown code span in a table cell: control characters escaped and
    ``|`` as ``\\|`` (GitHub tables take the escape even inside a code span); ``<``, ``>`` and
    ``&`` need nothing there (a code span's text is shown as written), and a name holding
    backticks gets a fence of one more backtick than its longest run, so that it cannot close
    the span early.

    >>> markdown_code("fc1"), markdown_code("a`<b>`"), markdown_code("x|y")
    ('`fc1`', '`` a`<b>` ``', '`x\\\\|y`')
    """
    text = escape(text).replace("|", "\\|")
    run = max((len(m) for m in re.findall("`+", text)), default=0)
    fence = "`" * (run + 1)
    pad = " " if run else ""  # a code span may not start or end with its own backtick
    return f"{fence}{pad}{text}{pad}{fence}"


MAX_FILE_NAME_BYTES = 250  # a name's UTF-8 bytes, so that NAME.json fits a 255-byte file name


def file_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be used as a file name in a directory of netsummary's choosing
    (``DIR/NAME.json``), or ``None`` when it can: it must not be empty, hold a control character
    (NUL, ESC, a newline, DEL, C1, a line separator, a bidirectional override: what
    :func:`escape` escapes) or a path separator (``/``, ``\\``), hold ``..`` or start with ``.``,
    nor be over :data:`MAX_FILE_NAME_BYTES` bytes of UTF-8.

    >>> file_name_problem("discriminator"), file_name_problem("a\\x00b"), file_name_problem("a/b")
    (None, 'it holds a control character (\\\\x00)', 'it holds a path separator (/)')
    """
    if not name:
        return "it is empty"
    bad = _UNSAFE.search(name)
    if bad:
        return f"it holds a control character ({escape(bad.group())})"
    sep = next((c for c in ("/", "\\") if c in name), None)
    if sep:
        return f"it holds a path separator ({sep})"
    if ".." in name:
        return "it holds .."
    if name.startswith("."):
        return "it starts with ."
    size = len(name.encode("utf-8"))
    if size > MAX_FILE_NAME_BYTES:
        return f"it is {size:,} bytes of UTF-8, over the limit of {MAX_FILE_NAME_BYTES}"
    return None


def shorten(text: str, limit: int) -> str:
    """``text`` cut in the middle to ``limit`` characters with ``…``, keeping both ends."""
    if len(text) <= limit:
        return text
    tail = (limit - 1) // 2
    return text[: limit - 1 - tail] + "…" + text[len(text) - tail :]


def shown(text: str, limit: int | None = None) -> str:
    """A name from a file as it may be printed: escaped, then shortened to ``limit`` characters.

    Only a bounded part of a huge name is escaped, so showing it costs at most O(limit)."""
    if limit is not None and len(text) > 4 * limit:  # an escape is at most 6 characters
        text = text[: 2 * limit] + text[len(text) - 2 * limit :]
    text = escape(text)
    return text if limit is None else shorten(text, limit)


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((what for test, what in _KINDS if test(mode)), "not a regular file")


def _refuse(mode: int, what: str) -> str:
    return f"it is {_kind(mode)}, not a regular file; netsummary reads {what} only from a regular file"


def regular_file_size(path: str, what: str, fail: Callable[[str], Exception]) -> int:
    """The size in bytes of ``path``, a regular file; ``fail(reason)`` is raised for anything
    else, checked with ``os.stat`` so that a FIFO or a device is never opened.

    Raises:
        OSError: ``os.stat`` fails (``FileNotFoundError`` for a missing file).
        Exception: ``fail(reason)``, for a path that is not a regular file.
    """
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise fail(_refuse(info.st_mode, what))
    return info.st_size


def _open_regular(path: str, what: str, fail: Callable[[str], Exception]) -> tuple[int, int]:
    """``(fd, size)`` of ``path``, checked to be a regular file before it is opened (``os.stat``),
    opened without blocking (a FIFO swapped in meanwhile cannot hang the open) and checked
    again (``fstat``)."""
    regular_file_size(path, what, fail)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise fail(_refuse(info.st_mode, what))
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def read_head(path: str, count: int, what: str, fail: Callable[[str], Exception]) -> tuple[bytes, int]:
    """The first ``count`` bytes of ``path``, a regular file, and its size.

    Raises:
        OSError: the file is missing (``FileNotFoundError``) or cannot be opened or read.
        Exception: ``fail(reason)`` for a path that is not a regular file (never opened).
    """
    fd, size = _open_regular(path, what, fail)
    try:
        return os.read(fd, count), size
    finally:
        os.close(fd)


def read_regular(path: str, limit: int, what: str, fail: Callable[[str], Exception]) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes (see :func:`read_head` for
    how it is opened); at most ``limit + 1`` bytes are ever read, so a file that grows while it
    is read is refused too.

    Raises:
        OSError: the file is missing (``FileNotFoundError``) or cannot be opened or read.
        Exception: ``fail(reason)``: not a regular file, or over ``limit`` bytes; the reason
            names the kind of file, or the size and the limit.
    """
    fd, size = _open_regular(path, what, fail)
    try:
        if size > limit:
            raise fail(_too_large(size, limit, what))
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise fail(_too_large(len(data), limit, what, "at least "))
    return data


def _too_large(size: int, limit: int, what: str, exact: str = "") -> str:
    mib = f" ({limit / MiB:g} MiB)" if limit >= MiB else ""
    return f"it is {exact}{size:,} bytes, over the limit of {limit:,} bytes{mib} for {what}"
