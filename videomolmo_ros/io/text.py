"""Text that came from the network, made safe to echo (logs, replies) and to use as a query.

Anyone on the DDS network can send a query, an id or a frame_id: what the node echoes back is
clipped, and invisible characters (controls, C1 controls, zero-width and bidi format
characters) never reach a log line or a model prompt.
"""

import unicodedata

ECHO_CHARS = 80


def _visible(char: str) -> str:
    category = unicodedata.category(char)
    if category == "Cc":
        return " "  # a control character separates words (a newline, a tab)
    return "" if category in ("Cf", "Cs") else char  # format characters join words invisibly


def clean(text: str) -> str:
    """`text` with control characters as spaces and invisible format characters removed."""
    return "".join(map(_visible, text))


def clip(text: str, limit: int = ECHO_CHARS) -> str:
    """The start of untrusted text to echo back: cleaned, at most `limit` characters, then '...'."""
    return clean(text[:limit]) + ("..." if len(text) > limit else "")
