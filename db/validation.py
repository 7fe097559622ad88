"""Input rules shared by the commands. Each check returns problems instead of raising, so
that one response can report every problem of an input at once."""

from __future__ import annotations

import re

from db.problems import Problem, ProblemCode

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,38}$")
PROJECT_KEY = re.compile(r"^[A-Z][A-Z0-9]{1,9}$")
HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


def length(
    value: str,
    field: tuple[str, ...],
    *,
    minimum: int,
    maximum: int,
    label: str,
    strip: bool = True,
) -> list[Problem]:
    """Length in characters (with `strip`, whitespace alone does not count), and text that
    PostgreSQL can store."""
    n = len(value.strip()) if strip else len(value)
    if n < minimum:
        what = "must not be blank" if minimum == 1 else f"must be at least {minimum} characters"
        return [Problem(f"{label} {what}.", ProblemCode.INVALID, field)]
    if len(value) > maximum:
        return [
            Problem(f"{label} must be at most {maximum} characters.", ProblemCode.INVALID, field)
        ]
    return storable(value, field, label)


def storable(value: str, field: tuple[str, ...], label: str) -> list[Problem]:
    """PostgreSQL text cannot hold NUL, and a lone surrogate cannot be encoded as UTF-8: either
    would otherwise fail in the driver as a server fault instead of a user error."""
    if "\x00" in value:
        return [Problem(f"{label} must not contain NUL characters.", ProblemCode.INVALID, field)]
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return [Problem(f"{label} is not valid Unicode text.", ProblemCode.INVALID, field)]
    return []


def pattern(
    value: str, regex: re.Pattern[str], field: tuple[str, ...], message: str
) -> list[Problem]:
    # fullmatch: `$` alone would also accept a trailing newline.
    return [] if regex.fullmatch(value) else [Problem(message, ProblemCode.INVALID, field)]


def slug(value: str, field: tuple[str, ...]) -> list[Problem]:
    return pattern(
        value,
        SLUG,
        field,
        "Slug must be 2-39 lowercase letters, digits or hyphens, starting with a letter or digit.",
    )


def project_key(value: str, field: tuple[str, ...]) -> list[Problem]:
    return pattern(
        value,
        PROJECT_KEY,
        field,
        "Key must be 2-10 uppercase letters or digits, starting with a letter.",
    )


def color(value: str, field: tuple[str, ...]) -> list[Problem]:
    return pattern(value, HEX_COLOR, field, 'Colour must be a hex colour such as "#d73a4a".')
