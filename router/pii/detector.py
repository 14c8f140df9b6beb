"""Find personal data and secrets in text, offline, with patterns and the checksums that real values obey.

Why our own patterns rather than Presidio: presidio-analyzer imports spaCy and wants a language model
for its engine, and its e-mail recogniser needs tldextract, which fetches the public-suffix list over the
network at first use. The recognisers we need are patterns plus validators, so they live here, each with a
check that cuts false positives: Luhn and card-network prefixes for cards, ISO 13616 mod-97 and the
country's length for IBANs, the SSA's rules for US SSNs, the check letter of a Spanish DNI, the
`ipaddress` module for IPs. `tests/pii` holds the property tests and the corpus of look-alikes whose
false-positive rate the issue note reports.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

PII_KINDS = ("email", "phone", "credit_card", "iban", "national_id", "ip_address", "secret")
"""What the detector knows; policy conditions (`pii: [...]`) and `redact: [...]` name these."""


@dataclass(frozen=True, slots=True)
class PiiMatch:
    kind: str
    start: int
    end: int
    text: str


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# Issuer prefixes (IIN ranges) and lengths of the card networks people actually paste.
_CARD_NETWORKS = re.compile(
    r"^(?:4\d{12}(?:\d{3}){0,2}"  # Visa: 13, 16, 19
    r"|(?:5[1-5]\d{2}|222[1-9]|22[3-9]\d|2[3-6]\d{2}|27[01]\d|2720)\d{12}"  # Mastercard
    r"|3[47]\d{13}"  # American Express
    r"|3(?:0[0-5]|[68]\d)\d{11,16}"  # Diners Club
    r"|6(?:011|5\d{2}|4[4-9]\d)\d{12,15}"  # Discover
    r"|35(?:2[89]|[3-8]\d)\d{12,15}"  # JCB
    r"|62\d{14,17})$"  # UnionPay
)


def _card(text: str) -> bool:
    digits = re.sub(r"[ -]", "", text)
    return bool(_CARD_NETWORKS.match(digits)) and luhn_valid(digits)


# ISO 13616 lengths of the countries that issue IBANs (SWIFT registry).
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def iban_valid(text: str) -> bool:
    iban = text.replace(" ", "").upper()
    if _IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _ssn(text: str) -> bool:
    area, group, serial = text.split("-")
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


def _dni(text: str) -> bool:
    return "TRWAGMYFPDXBNJZSQVHLCKE"[int(text[:8]) % 23] == text[8].upper()


def _ip(text: str) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    # "::" or "1::" is a valid address but far more often a C++ scope or a typo than someone's IP.
    return address.version == 4 or text.count(":") >= 3 or len(text.replace(":", "")) >= 8


def _digits_between(low: int, high: int) -> Callable[[str], bool]:
    def check(text: str) -> bool:
        return low <= sum(ch.isdigit() for ch in text) <= high

    return check


@dataclass(frozen=True, slots=True)
class _Recogniser:
    kind: str
    pattern: re.Pattern[str]
    valid: Callable[[str], bool] | None = None
    """Checksum or structure check on the matched text; None accepts every match of the pattern."""
    shrink: bool = False
    """Grouped runs (cards, IBANs): when the whole run fails the check, try its shorter prefixes that end
    between groups."""


_NOT_AFTER_DIGIT = r"(?<![\d.,])"
_NOT_BEFORE_DIGIT = r"(?![\d]|[.,]\d)"

# Order matters only for ties: at the same start, the longer match wins; at the same span, the earlier
# recogniser here (secrets before cards before phone numbers).
_RECOGNISERS = (
    _Recogniser(
        "secret",
        re.compile(
            r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z]+ )?PRIVATE KEY-----"
            r"|\bsk-(?:proj-|ant-(?:api\d\d-)?)?[A-Za-z0-9_-]{20,}"  # OpenAI, Anthropic
            r"|\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{22,})\b"  # GitHub
            r"|\bglpat-[A-Za-z0-9_-]{20,}"  # GitLab
            r"|\bxox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
            r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"  # AWS access key id
            r"|\bAIza[0-9A-Za-z_-]{35}"  # Google API key
            r"|\b[sprk]k_(?:live|test)_[A-Za-z0-9]{16,}"  # Stripe
            r"|\bhf_[A-Za-z0-9]{30,}"  # Hugging Face
            r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JWT
        ),
    ),
    _Recogniser(
        "credit_card", re.compile(_NOT_AFTER_DIGIT + r"\d(?:[ -]?\d){12,18}" + _NOT_BEFORE_DIGIT), _card, shrink=True
    ),
    _Recogniser("iban", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"), iban_valid, shrink=True),
    _Recogniser(
        "email",
        re.compile(
            r"(?<![\w.+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,63})@"
            r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}\b"
        ),
    ),
    _Recogniser(
        "national_id",
        re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])"),  # US Social Security number
        _ssn,
    ),
    _Recogniser(
        "national_id",
        # UK National Insurance number: two letters (not BG, GB, NK, KN, TN, NT, ZZ), six digits, A-D.
        re.compile(r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"),
    ),
    _Recogniser("national_id", re.compile(r"\b\d{8}[A-HJ-NP-TV-Z]\b"), _dni),  # Spanish DNI with its check letter
    _Recogniser(
        "ip_address",
        re.compile(
            # Not after "section"/"version"/"v": 3.14.15.9 there is a number, not an address.
            r"(?<![\w.])(?<![Ss]ection )(?<![Vv]ersion )(?<![Vv])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)"
            r"|(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){1,7}(?::|(?::[0-9A-Fa-f]{1,4}){1,6}|[0-9A-Fa-f]{1,4})(?![\w:])"
        ),
        _ip,
    ),
    _Recogniser(
        "phone",
        re.compile(
            # International: +CC then 7-13 more digits in groups.
            r"(?<![\w+])\+[1-9]\d{0,2}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?![\d-])"
            # North American: (555) 123-4567, 555-123-4567, 555.123.4567.
            r"|(?<![\w(])(?:\(\d{3}\) ?|\d{3}[-.])\d{3}[-.]\d{4}(?![\d-])"
            # National numbers with a trunk 0: 030 1234567, 07911 123456, 01-23-45-67-89.
            r"|(?<![\w.])(?<!\d[ /-])0[1-9]\d{0,3}(?:[ /-]\d{2,8}){1,4}(?![\w-])"
        ),
        _digits_between(7, 15),
        shrink=True,
    ),
)


def _candidates(recogniser: _Recogniser, text: str) -> Iterator[PiiMatch]:
    """Matches that pass the validator. A rejected match is retried one character later, so that
    "0 4111 1111 1111 1111" (a stray digit glued on by the separators) still finds the card."""
    at = 0
    while (m := recogniser.pattern.search(text, at)) is not None:
        if (accepted := _accepted(recogniser, text, m)) is not None:
            yield PiiMatch(recogniser.kind, accepted.start(), accepted.end(), accepted.group())
            at = max(accepted.end(), accepted.start() + 1)
        else:
            at = m.start() + 1


def _accepted(recogniser: _Recogniser, text: str, m: re.Match[str]) -> re.Match[str] | None:
    """`m` if valid; for grouped runs, else the longest valid prefix that ends between two digit groups
    ("4111 1111 1111 1111 2024": the card, not the card and a year)."""
    valid = recogniser.valid
    if valid is None or valid(m.group()):
        return m
    if not recogniser.shrink:
        return None
    for end in range(m.end() - 1, m.start(), -1):
        if text[end].isalnum() or not text[end - 1].isalnum():
            continue
        shorter = recogniser.pattern.match(text, m.start(), end)
        if shorter is not None and shorter.end() == end and valid(shorter.group()):
            return shorter
    return None


def find_pii(text: str, kinds: Iterable[str] | None = None) -> list[PiiMatch]:
    """Non-overlapping matches in `text`, in order; `kinds` limits the search (default: every kind)."""
    wanted = set(PII_KINDS if kinds is None else kinds)
    found: list[tuple[int, int, int, PiiMatch]] = []
    for rank, recogniser in enumerate(_RECOGNISERS):
        if recogniser.kind not in wanted:
            continue
        for m in _candidates(recogniser, text):
            found.append((m.start, m.start - m.end, rank, m))
    found.sort(key=lambda item: item[:3])
    kept: list[PiiMatch] = []
    end = -1
    for start, _, _, match in found:
        if start >= end:
            kept.append(match)
            end = match.end
    return kept
