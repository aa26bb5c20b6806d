"""Text from users and files shown through Streamlit, which renders Markdown in st.markdown, st.caption, alerts,
toasts, progress texts and widget labels: a file name such as '![x](http://host/img.png).fcs' would otherwise make
every browser that shows it fetch that image."""
from __future__ import annotations

import re

WORD_JOINER = "\u2060"  # invisible; it splits ':smile:', ':material_x:', 'http://' or 'www.' so Streamlit links none
_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_JOINED = re.compile(r"(?<=:)(?=[\w+/-])|(?i:(?<=\bwww))(?=\.)")  # where Streamlit finds icons and web addresses
_SPECIAL = re.compile(
    r"[\\`*\[\]<|~$&]"  # code, emphasis, links and images, autolinks and HTML, tables, strikethrough, math and
    # entities: special anywhere (a colon needs no escape: the word joiner after it stops directives too)
    r"|(?<![^\W_])_|_(?![^\W_])"  # '_' unless between letters or digits, where it never starts or ends emphasis
    r"|^\s*(?:[#>+=-]|\d+(?=[.)]))"  # a heading, quote, list or rule can only start the text (it is one line)
)


def literal(text: object) -> str:
    """`text` as Markdown that Streamlit shows as written, on one line.

    The characters that can start Markdown syntax are backslash-escaped (no link, image, emphasis, code, HTML, table
    or math can form); characters that are harmless where they stand ('.', '-', '(', ':', '_' inside a word, '#'
    after the start) are left alone, so sentences and file names read the same in the page source. Control
    characters and line breaks become one space. An invisible word joiner goes after a colon before a word or '/'
    and after 'www': Streamlit reads ':color[…]' as a directive, turns ':material/icon:', ':streamlit:' and emoji
    short codes into icons and 'http://…' and 'www.…' into links, the last three in the text left once escapes are
    gone, so only a character between them stops them."""
    one_line = _JOINED.sub(WORD_JOINER, _LINE_BREAKS.sub(" ", str(text)))
    return _SPECIAL.sub(_escape, one_line)


def _escape(match: re.Match[str]) -> str:
    """A backslash before the special character the match ends with, or after a list number ('1.' → '1\\.')."""
    found = match.group()
    return found + "\\" if found[-1].isdigit() else found[:-1] + "\\" + found[-1]
