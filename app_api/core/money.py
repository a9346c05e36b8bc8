"""Money is integer fen everywhere; these are the only conversions to and from yuan text."""

from __future__ import annotations


def fen_to_yuan(fen: int) -> str:
    """1234 -> "12.34", -5 -> "-0.05" (exact; never through float)."""
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


def yuan_text(fen: int) -> str:
    """For people: whole yuan without decimals ("20"), otherwise two decimals ("12.50")."""
    return fen_to_yuan(fen).removesuffix(".00")


def yuan_to_fen(value: str) -> int:
    """ "12.34" -> 1234, exactly. A leading backtick (WeChat bills) and blanks are ignored; more than
    two decimals that are not zeros are refused (ValueError), as is anything that is not an amount."""
    text = value.strip().lstrip("`").strip()
    if not text:
        raise ValueError("empty amount")
    negative = text.startswith("-")
    if negative or text.startswith("+"):
        text = text[1:]
    whole, _, frac = text.partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        raise ValueError(f"not an amount: {value!r}")
    if len(frac) > 2 and frac[2:].strip("0"):
        raise ValueError(f"amount with fractions of a fen: {value!r}")
    fen = int(whole) * 100 + int((frac + "00")[:2])
    return -fen if negative else fen
