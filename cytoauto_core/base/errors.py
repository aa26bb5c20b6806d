"""Exceptions the app shows to users as one plain sentence, and how those sentences quote what a file holds."""

QUOTE_LIMIT = 60  # characters of a file's text a message quotes: a gate name of 5,000 characters shows as 60 and '…'


class CytoInputError(ValueError):
    """A user's file or request cannot be used; the message is one sentence for a biologist."""


def shortened(text: object, limit: int = QUOTE_LIMIT) -> str:
    """`text` made safe for a one-line message: control characters escaped ('\\n', '\\x00'), cut to `limit`
    characters with '…', so a file cannot make a refusal long or break it over lines."""
    text = str(text)
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text[:limit])
    return shown + "…" if len(text) > limit else shown


def quoted(text: object, limit: int = QUOTE_LIMIT) -> str:
    """`text` from a file (a gate, channel or keyword value) in single quotes for a message, shortened."""
    return f"'{shortened(text, limit)}'"


def first_line(exc: BaseException, limit: int = 160) -> str:
    """The first line of a library's error, without a trailing period, shortened (it may quote the file)."""
    return shortened((str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip("."), limit)
