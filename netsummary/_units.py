"""Parse and format the human quantities used in budgets: element counts, byte sizes, percentages.

>>> parse_count("12M"), parse_bytes("50MiB"), parse_bytes("50MB"), parse_percent("2%")
(12000000, 52428800, 50000000, 0.02)

Which unit is which:

* **Counts** (parameters, MACs, FLOPs) use SI decimal suffixes: ``K``/``k`` = 10**3,
  ``M`` = 10**6, ``G``/``g`` = 10**9, ``T``/``t`` = 10**12. A lower-case ``m`` is rejected: in SI
  it is milli, so ``"12m"`` is ambiguous; write ``12M``. The result must be a whole number:
  ``"1.5G"`` is fine, ``"1.5"`` and ``"1.0000005K"`` are rejected. Thousands separators
  (``"11,038,081"``), underscores (``"11_038_081"``) and exponents (``"3e6"``) are accepted.
  ``B`` is *not* a count suffix (it would read as bytes); write ``7G`` for "7B parameters".
* **Byte sizes** say explicitly which system they use:
  decimal SI ``kB``/``KB`` = 10**3, ``MB`` = 10**6 bytes, ``GB`` = 10**9, ``TB`` = 10**12;
  binary IEC ``KiB`` = 2**10, ``MiB`` = 2**20 bytes, ``GiB`` = 2**30, ``TiB`` = 2**40;
  ``B`` or no unit = plain bytes. Case does not matter (``kB``, ``KB``, ``MIB``) except for the
  ``B`` after a prefix, which must be upper-case: ``Mb`` is megabits, so ``"50Mb"`` and
  ``"50mib"`` are rejected (write ``50MB`` or ``50MiB``). A bare ``K``/``M``/``G``/``T`` is
  rejected as ambiguous between the two systems. A fraction of a prefixed unit is rounded *down*
  to whole bytes (``"42.1MiB"`` = floor(42.1 * 2**20) = 44,145,049 bytes), which keeps a budget
  conservative; a fraction of a plain byte (``"0.5B"``) is rejected.
* **Percentages** need the ``%`` sign and become fractions: ``"2%"`` -> 0.02.

Formatting: :func:`format_count` writes exact integers with thousands separators
(``11,038,081``); :func:`format_bytes` always uses *binary* IEC units with two decimals
(``42.11 MiB``), or plain ``B`` below 1 KiB.

Every parser raises :class:`~netsummary._errors.InputSpecError` (a ``ValueError``) for a malformed
or negative value, and :class:`~netsummary._errors.InputTypeError` for a value of the wrong type;
the offending value is kept on ``.value``.
"""

from __future__ import annotations

import re
from decimal import Decimal

from ._errors import InputSpecError, InputTypeError

__all__ = ["format_bytes", "format_count", "parse_bytes", "parse_count", "parse_percent"]

COUNT_SUFFIXES: dict[str, int] = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}

BYTE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}

# A lower-case b after a prefix means bits: the prefix's names and both byte readings, for the message.
_BIT_PREFIXES: dict[str, tuple[str, str, str, str]] = {
    "k": ("kilo", "kibi", "10**3", "2**10"),
    "m": ("mega", "mebi", "10**6", "2**20"),
    "g": ("giga", "gibi", "10**9", "2**30"),
    "t": ("tera", "tebi", "10**12", "2**40"),
}

# Bare K/M/G/T in a byte size: decimal and binary readings, for the error message.
_AMBIGUOUS_BYTES: dict[str, tuple[str, str]] = {
    "k": ("10**3", "2**10"),
    "m": ("10**6", "2**20"),
    "g": ("10**9", "2**30"),
    "t": ("10**12", "2**40"),
}

# Largest decimal exponent accepted (10**30 is far above any real model); guards against
# inputs such as "1e999999999" that would otherwise build a gigantic integer.
_MAX_EXPONENT = 30

# A non-negative decimal number: "12", "1.5", ".5", "11,038,081", "11_038_081", "3e6", "2.5E-1".
_NUMBER = r"(?:\d{1,3}(?:,\d{3})+|\d+(?:_\d+)*)?(?:\.\d+)?(?:[eE][+-]?\d+)?"
_QUANTITY = re.compile(rf"(?P<number>{_NUMBER})\s*(?P<unit>[A-Za-z]*)")

_COUNT_EXPECTED = (
    "expected an integer with an optional K/M/G/T suffix (SI, 1K = 1,000), "
    "e.g. 12M or 1.5G (also 250k, 11,038,081, 3e6)"
)
_BYTES_EXPECTED = (
    "expected a size with a unit, decimal kB/MB/GB/TB (1MB = 10**6 bytes) or "
    "binary KiB/MiB/GiB/TiB (1MiB = 2**20 bytes), e.g. 50MiB, 1.5GB or 1024B"
)
_PERCENT_EXPECTED = "expected a percentage with a % sign, e.g. 2% or 0.5%"


def _split(text: str, value: str, what: str, expected: str) -> tuple[Decimal, str, str]:
    """Split ``text`` (part of ``value``) into a non-negative number, the number as written and its
    unit as written (callers lower-case it where case does not matter)."""
    text = text.strip()
    if text.startswith("-"):
        raise InputSpecError(f"invalid {what} {value!r}: must not be negative; {expected}", value)
    match = _QUANTITY.fullmatch(text.lstrip("+"))
    if match is None or not any(ch.isdigit() for ch in match["number"]):
        raise InputSpecError(f"invalid {what} {value!r}: {expected}", value)
    number = Decimal(match["number"].replace(",", "").replace("_", ""))
    if number.adjusted() > _MAX_EXPONENT:
        raise InputSpecError(f"invalid {what} {value!r}: too large (above 1e{_MAX_EXPONENT})", value)
    return number, match["number"], match["unit"]


def _whole(amount: Decimal, value: object, what: str, noun: str, hint: str) -> int:
    """Return ``amount`` as an int, or raise if it has a fractional part."""
    if amount != amount.to_integral_value():
        raise InputSpecError(
            f"invalid {what} {value!r}: {amount.normalize():f} is not a whole number of {noun}; {hint}",
            value,
        )
    return int(amount)


def _check_python_number(value: object, what: str, expected: str) -> Decimal | None:
    """Validate an int/float given directly from Python; ``None`` means "it is a string"."""
    if isinstance(value, str):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputTypeError(
            f"invalid {what} {value!r}: must be a str or int, not {type(value).__name__}; {expected}",
            value,
        )
    amount = Decimal(value)
    if not amount.is_finite():
        raise InputSpecError(f"invalid {what} {value!r}: {expected}", value)
    if amount < 0:
        raise InputSpecError(f"invalid {what} {value!r}: must not be negative; {expected}", value)
    return amount


def parse_count(value: str | int) -> int:
    """Parse an element count (parameters, MACs) with an optional SI suffix into an exact int.

    >>> parse_count("12M"), parse_count("1.5G"), parse_count("250k"), parse_count("11,038,081")
    (12000000, 1500000000, 250000, 11038081)
    >>> parse_count("3e6"), parse_count(42)
    (3000000, 42)

    Raises:
        InputSpecError: malformed text, an unknown suffix (a lower-case ``m``, which is milli), a
            negative value, or a value that is not a whole number (``"1.5"``, ``"1.0000005K"``).
        InputTypeError: ``value`` is neither ``str`` nor ``int`` (floats must be integral).
    """
    amount = _check_python_number(value, "count", _COUNT_EXPECTED)
    if amount is not None:
        return _whole(amount, value, "count", "elements", "give an integer")
    assert isinstance(value, str)
    number, written, raw_unit = _split(value, value, "count", _COUNT_EXPECTED)
    if raw_unit == "m":
        amount = number * COUNT_SUFFIXES["m"]
        exact = f" for {format_count(int(amount))}" if amount == amount.to_integral_value() else ""
        raise InputSpecError(f"invalid count {value!r}: m is milli; write {written}M{exact}", value)
    unit = raw_unit.lower()
    if unit not in COUNT_SUFFIXES:
        hint = "B is not a count suffix (write 7G for 7 billion); " if unit == "b" else ""
        raise InputSpecError(f"invalid count {value!r}: {hint}{_COUNT_EXPECTED}", value)
    return _whole(
        number * COUNT_SUFFIXES[unit], value, "count", "elements",
        "use a larger suffix (e.g. 1.5M) or an integer",
    )


def parse_bytes(value: str | int) -> int:
    """Parse a byte size with an explicit decimal (MB) or binary (MiB) unit into an exact int.

    >>> parse_bytes("50MiB"), parse_bytes("50MB"), parse_bytes("1.5 GiB")
    (52428800, 50000000, 1610612736)
    >>> parse_bytes("1024"), parse_bytes("1024B"), parse_bytes("2kB"), parse_bytes(4096)
    (1024, 1024, 2000, 4096)
    >>> parse_bytes("42.1MiB")             # floor(42.1 * 1,048,576 = 44,145,049.6): rounded down
    44145049

    Raises:
        InputSpecError: malformed text, an unknown or ambiguous unit (a bare ``M``), bits (``Mb``),
            a negative value, or a fraction of a plain byte (``"0.5B"``, ``0.5``).
        InputTypeError: ``value`` is neither ``str`` nor ``int``.
    """
    amount = _check_python_number(value, "size", _BYTES_EXPECTED)
    if amount is not None:
        return _whole(amount, value, "size", "bytes", "give an integer")
    assert isinstance(value, str)
    number, written, raw_unit = _split(value, value, "size", _BYTES_EXPECTED)
    unit = raw_unit.lower()
    if raw_unit.endswith("b") and (unit[:-1] in _BIT_PREFIXES or (unit.endswith("ib") and unit[:-2] in _BIT_PREFIXES)):
        prefix = unit[0]
        decimal_name, binary_name, decimal, binary = _BIT_PREFIXES[prefix]
        letter = "k" if prefix == "k" else prefix.upper()  # SI writes kB; KiB is upper-case
        if unit.endswith("ib"):
            fix = f"write {written}{prefix.upper()}iB ({binary} bytes)"
            bits = f"{binary_name}bits"
        else:
            fix = f"write {written}{letter}B ({decimal} bytes) or {written}{prefix.upper()}iB ({binary} bytes)"
            bits = f"{decimal_name}bits"
        raise InputSpecError(f"invalid size {value!r}: {raw_unit} means {bits}; {fix}", value)
    if unit in _AMBIGUOUS_BYTES:
        letter = unit.upper()
        decimal, binary = _AMBIGUOUS_BYTES[unit]
        raise InputSpecError(
            f"invalid size {value!r}: {letter!r} is ambiguous; write {letter}B for decimal "
            f"(1{letter}B = {decimal} bytes) or {letter}iB for binary (1{letter}iB = {binary} bytes)",
            value,
        )
    if unit not in BYTE_UNITS:
        raise InputSpecError(f"invalid size {value!r}: {_BYTES_EXPECTED}", value)
    if BYTE_UNITS[unit] == 1:
        return _whole(number, value, "size", "bytes", "give an integer or a larger unit (0.5KiB)")
    return int(number * BYTE_UNITS[unit])  # rounded down to whole bytes: a budget floor is conservative


def parse_percent(value: str | float) -> float:
    """Parse a percentage such as ``"2%"`` into a fraction (0.02).

    >>> parse_percent("2%"), parse_percent("0.5%"), parse_percent("150%")
    (0.02, 0.005, 1.5)

    A Python ``int``/``float`` is taken to be a fraction already (``0.02`` means 2%).

    Raises:
        InputSpecError: no ``%`` sign, a malformed number, or a negative value.
        InputTypeError: ``value`` is neither ``str`` nor a number.
    """
    amount = _check_python_number(value, "percentage", _PERCENT_EXPECTED)
    if amount is not None:
        return float(value)  # type: ignore[arg-type]
    assert isinstance(value, str)
    text = value.strip()
    if not text.endswith("%"):
        raise InputSpecError(f"invalid percentage {value!r}: {_PERCENT_EXPECTED}", value)
    number, _, unit = _split(text[:-1], value, "percentage", _PERCENT_EXPECTED)
    if unit:
        raise InputSpecError(f"invalid percentage {value!r}: {_PERCENT_EXPECTED}", value)
    return float(number / 100)


def format_count(n: int) -> str:
    """Write an exact count with thousands separators.

    >>> format_count(11038081), format_count(0), format_count(-1500)
    ('11,038,081', '0', '-1,500')
    """
    return f"{n:,}"


def format_bytes(n: int) -> str:
    """Write a byte size in binary IEC units (KiB = 1024 bytes) with two decimals.

    >>> format_bytes(44_154_324), format_bytes(512), format_bytes(1536), format_bytes(2**40)
    ('42.11 MiB', '512 B', '1.50 KiB', '1.00 TiB')
    """
    sign = "-" if n < 0 else ""
    size = abs(n)
    if size < 1024:
        return f"{sign}{size} B"
    # The largest unit in which the *rounded* value is at least 1.00, so that 1023.999 KiB
    # prints as "1.00 MiB" rather than "1024.00 KiB". KiB always qualifies here.
    for exponent, unit in ((4, "TiB"), (3, "GiB"), (2, "MiB")):
        scaled = size / 1024**exponent
        if round(scaled, 2) >= 1:
            return f"{sign}{scaled:.2f} {unit}"
    return f"{sign}{size / 1024:.2f} KiB"
