"""Tests for netsummary._units: parsing budgets (counts, bytes, percentages) and formatting them."""

from __future__ import annotations

import pytest

from netsummary._errors import InputSpecError, InputTypeError
from netsummary._units import format_bytes, format_count, parse_bytes, parse_count, parse_percent

# --------------------------------------------------------------------------------------- counts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("12M", 12_000_000, id="M-is-1e6"),
        pytest.param("1.5G", 1_500_000_000, id="fractional-G"),
        pytest.param("11,038,081", 11_038_081, id="thousands-commas"),
        pytest.param("11_038_081", 11_038_081, id="underscores"),
        pytest.param("250k", 250_000, id="lower-k"),
        pytest.param("250K", 250_000, id="upper-K"),
        pytest.param("2T", 2_000_000_000_000, id="T-is-1e12"),
        pytest.param("0", 0, id="zero"),
        pytest.param("42", 42, id="plain-int"),
        pytest.param("+42", 42, id="explicit-plus"),
        pytest.param("3e6", 3_000_000, id="exponent"),
        pytest.param("2.5E-1K", 250, id="exponent-and-suffix"),  # 0.25 * 1000 = 250
        pytest.param(" 12 M ", 12_000_000, id="spaces-around-and-before-suffix"),
        pytest.param("1.000001M", 1_000_001, id="six-decimals-M"),  # 1.000001 * 10**6 = 1,000,001
        # In floats 0.067 * 1e9 == 67000000.00000001; the parser must do exact decimal arithmetic.
        pytest.param("0.067G", 67_000_000, id="exact-not-float"),
    ],
)
def test_parse_count_valid(text: str, expected: int) -> None:
    result = parse_count(text)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(11_038_081, 11_038_081, id="int"),
        pytest.param(0, 0, id="int-zero"),
        pytest.param(1.5e6, 1_500_000, id="integral-float"),
    ],
)
def test_parse_count_accepts_python_numbers(value: int | float, expected: int) -> None:
    result = parse_count(value)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param(
            "12X",
            r"^invalid count '12X': expected an integer with an optional K/M/G/T suffix "
            r"\(SI, 1K = 1,000\), e\.g\. 12M or 1\.5G",
            id="unknown-suffix",
        ),
        pytest.param("", r"^invalid count '': expected an integer", id="empty"),
        pytest.param("M", r"^invalid count 'M': expected an integer", id="suffix-without-number"),
        pytest.param("12 M M", r"^invalid count '12 M M': expected", id="two-suffixes"),
        pytest.param("1,23,456", r"^invalid count '1,23,456': expected", id="bad-comma-grouping"),
        pytest.param("1.5", r"^invalid count '1\.5': 1\.5 is not a whole number of elements", id="fraction"),
        pytest.param(
            "1.0000005K",  # 1.0000005 * 1000 = 1000.0005
            r"^invalid count '1\.0000005K': 1000\.0005 is not a whole number of elements",
            id="fraction-after-suffix",
        ),
        pytest.param("-5", r"^invalid count '-5': must not be negative", id="negative"),
        pytest.param("-1.5M", r"^invalid count '-1\.5M': must not be negative", id="negative-with-suffix"),
        pytest.param("7B", r"^invalid count '7B': B is not a count suffix \(write 7G", id="B-for-billion"),
        pytest.param("12m", r"^invalid count '12m': m is milli; write 12M for 12,000,000$", id="lower-m-is-milli"),
        pytest.param("1.5m", r"^invalid count '1\.5m': m is milli; write 1\.5M for 1,500,000$", id="fractional-m"),
        pytest.param("1e40", r"^invalid count '1e40': too large", id="huge-exponent"),
    ],
)
def test_parse_count_rejects(text: str, match: str) -> None:
    with pytest.raises(InputSpecError, match=match) as info:
        parse_count(text)
    assert info.value.value == text
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        pytest.param([12], InputTypeError, r"^invalid count \[12\]: must be a str or int, not list", id="list"),
        pytest.param(None, InputTypeError, r"^invalid count None: must be a str or int, not NoneType", id="none"),
        pytest.param(True, InputTypeError, r"^invalid count True: must be a str or int, not bool", id="bool"),
        pytest.param(-3, InputSpecError, r"^invalid count -3: must not be negative", id="negative-int"),
        pytest.param(1.5, InputSpecError, r"^invalid count 1\.5: 1\.5 is not a whole", id="fractional-float"),
        pytest.param(float("inf"), InputSpecError, r"^invalid count inf: expected an integer", id="inf"),
    ],
)
def test_parse_count_rejects_python_values(value: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        parse_count(value)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- bytes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("50MiB", 52_428_800, id="MiB-binary"),  # 50 * 2**20 = 52,428,800
        pytest.param("50MB", 50_000_000, id="MB-decimal"),  # 50 * 10**6
        pytest.param("50MIB", 52_428_800, id="MIB-uppercase"),
        pytest.param("50mB", 50_000_000, id="prefix-case-does-not-matter"),
        pytest.param("2kB", 2_000, id="kB-SI"),
        pytest.param("2KB", 2_000, id="KB-decimal"),
        pytest.param("2KiB", 2_048, id="KiB"),  # 2 * 1024
        pytest.param("1.5GiB", 1_610_612_736, id="fractional-GiB"),  # 1.5 * 2**30 = 1,610,612,736
        pytest.param("1.5 GB", 1_500_000_000, id="space-before-unit"),
        pytest.param("1TiB", 1_099_511_627_776, id="TiB"),  # 2**40
        pytest.param("1TB", 1_000_000_000_000, id="TB"),
        pytest.param("1024", 1_024, id="no-unit"),
        pytest.param("1024B", 1_024, id="B"),
        pytest.param("1024 b", 1_024, id="lower-b-is-bytes"),
        pytest.param("0.5KiB", 512, id="half-KiB"),
        # fractions of a prefixed unit are rounded down to whole bytes (a budget floor is conservative)
        pytest.param("42.1MiB", 44_145_049, id="fraction-rounded-down"),  # 42.1 * 2**20 = 44,145,049.6
        pytest.param("0.1MiB", 104_857, id="tenth-MiB-rounded-down"),  # 0.1 * 1,048,576 = 104,857.6
        pytest.param("1.0000005kB", 1_000, id="fraction-of-a-byte-dropped"),  # 1.0000005 * 1000 = 1000.0005
        pytest.param("1,048,576B", 1_048_576, id="commas"),
    ],
)
def test_parse_bytes_valid(text: str, expected: int) -> None:
    result = parse_bytes(text)
    assert result == expected
    assert type(result) is int


def test_parse_bytes_accepts_int() -> None:
    assert parse_bytes(4096) == 4096


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param(
            "50M",
            r"^invalid size '50M': 'M' is ambiguous; write MB for decimal \(1MB = 10\*\*6 bytes\) "
            r"or MiB for binary \(1MiB = 2\*\*20 bytes\)",
            id="bare-M-ambiguous",
        ),
        pytest.param("2g", r"^invalid size '2g': 'G' is ambiguous; write GB", id="bare-g-ambiguous"),
        pytest.param(
            "5XB",
            r"^invalid size '5XB': expected a size with a unit, decimal kB/MB/GB/TB \(1MB = 10\*\*6 bytes\) "
            r"or binary KiB/MiB/GiB/TiB \(1MiB = 2\*\*20 bytes\), e\.g\. 50MiB, 1\.5GB or 1024B",
            id="unknown-unit",
        ),
        pytest.param("MiB", r"^invalid size 'MiB': expected a size", id="unit-without-number"),
        pytest.param("0.5B", r"^invalid size '0\.5B': 0\.5 is not a whole number of bytes", id="half-byte"),
        pytest.param("1.5", r"^invalid size '1\.5': 1\.5 is not a whole number of bytes", id="fraction-no-unit"),
        pytest.param(
            "50Mb",
            r"^invalid size '50Mb': Mb means megabits; write 50MB \(10\*\*6 bytes\) or 50MiB \(2\*\*20 bytes\)$",
            id="Mb-is-megabits",
        ),
        pytest.param(
            "1Kb", r"^invalid size '1Kb': Kb means kilobits; write 1kB \(10\*\*3 bytes\) or 1KiB \(2\*\*10 bytes\)$",
            id="Kb-is-kilobits",
        ),
        pytest.param("50mb", r"^invalid size '50mb': mb means megabits; write 50MB", id="mb-lowercase-is-bits"),
        pytest.param(
            "2mib", r"^invalid size '2mib': mib means mebibits; write 2MiB \(2\*\*20 bytes\)$", id="mib-is-mebibits"
        ),
        pytest.param("-1MiB", r"^invalid size '-1MiB': must not be negative", id="negative"),
    ],
)
def test_parse_bytes_rejects(text: str, match: str) -> None:
    with pytest.raises(InputSpecError, match=match) as info:
        parse_bytes(text)
    assert info.value.value == text


def test_parse_bytes_rejects_wrong_type() -> None:
    with pytest.raises(InputTypeError, match=r"^invalid size b'1MiB': must be a str or int, not bytes"):
        parse_bytes(b"1MiB")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------- percentages


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2%", 0.02, id="two-percent"),
        pytest.param("0.5%", 0.005, id="half-percent"),
        pytest.param("0.07%", 0.0007, id="exact-not-float"),  # 0.07 / 100 in floats is 0.0007000000000000001
        pytest.param(" 10 % ", 0.10, id="spaces"),
        pytest.param("0%", 0.0, id="zero"),
        pytest.param("150%", 1.5, id="above-100"),
    ],
)
def test_parse_percent_valid(text: str, expected: float) -> None:
    assert parse_percent(text) == expected


def test_parse_percent_takes_python_numbers_as_fractions() -> None:
    assert parse_percent(0.02) == 0.02
    assert parse_percent(1) == 1.0


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param(
            "2", r"^invalid percentage '2': expected a percentage with a % sign, e\.g\. 2% or 0\.5%", id="no-sign"
        ),
        pytest.param("%", r"^invalid percentage '%': expected a percentage", id="sign-only"),
        pytest.param("2k%", r"^invalid percentage '2k%': expected a percentage", id="suffix"),
        pytest.param("two%", r"^invalid percentage 'two%': expected a percentage", id="words"),
        pytest.param("-2%", r"^invalid percentage '-2%': must not be negative", id="negative"),
    ],
)
def test_parse_percent_rejects(text: str, match: str) -> None:
    with pytest.raises(InputSpecError, match=match):
        parse_percent(text)


def test_parse_percent_rejects_negative_fraction() -> None:
    with pytest.raises(InputSpecError, match=r"^invalid percentage -0\.1: must not be negative"):
        parse_percent(-0.1)


# ------------------------------------------------------------------------------------ formatting


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        pytest.param(11_038_081, "11,038,081", id="millions"),
        pytest.param(999, "999", id="no-separator"),
        pytest.param(0, "0", id="zero"),
        pytest.param(-1_500, "-1,500", id="negative-delta"),
    ],
)
def test_format_count(n: int, expected: str) -> None:
    assert format_count(n) == expected


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        pytest.param(0, "0 B", id="zero"),
        pytest.param(1_023, "1023 B", id="below-KiB"),
        pytest.param(1_024, "1.00 KiB", id="one-KiB"),
        pytest.param(1_536, "1.50 KiB", id="one-and-half-KiB"),
        pytest.param(44_154_324, "42.11 MiB", id="MiB"),  # 44,154,324 / 2**20 = 42.1089...
        pytest.param(2**20 - 1, "1.00 MiB", id="rounds-up-to-next-unit"),  # 1023.999 KiB
        pytest.param(3 * 2**30, "3.00 GiB", id="GiB"),
        pytest.param(2**40, "1.00 TiB", id="TiB"),
        pytest.param(2048 * 2**40, "2048.00 TiB", id="beyond-TiB-stays-TiB"),
        pytest.param(-1_536, "-1.50 KiB", id="negative-delta"),
    ],
)
def test_format_bytes(n: int, expected: str) -> None:
    assert format_bytes(n) == expected


@pytest.mark.parametrize("text", ["12M", "1.5G", "250k", "11,038,081"])
def test_count_round_trips_through_format(text: str) -> None:
    assert parse_count(format_count(parse_count(text))) == parse_count(text)
