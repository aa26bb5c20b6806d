"""User and file text reaches Streamlit's Markdown literally: no image a browser would fetch, no link, no formatting."""
from __future__ import annotations

from dataclasses import replace

import pytest
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from cytoauto_core.store.workspace import Workspace
from cytoauto_core.study.demo import make_demo
from ui.text import WORD_JOINER, literal

EVIL_NAME = "![x](http://evil.test/img.png).fcs"
MARKUP = {  # text → the Markdown it would make if shown as it is
    EVIL_NAME: "image",
    "[click](http://evil.test)": "link_open",
    "<http://evil.test>": "link_open",
    "*bold* and _it_": "em_open",
    "`code`": "code_inline",
    "~~gone~~": "s_open",
    "a <img src=x onerror=alert(1)>": "html_inline",
    "# heading": "heading_open",
    "- item": "bullet_list_open",
    "1. item": "ordered_list_open",
    "> quote": "blockquote_open",
    "line\n# heading": "heading_open",
    "**strong**": "strong_open",
    "a|b\n-|-": "table_open",
}
SAFE = ["not_here.fcs", "export_COVID19 samples 23_04_20_ST3 (O) #12.fcs", "alice@lab.test", "CD4+ CD8- T cells",
        "The label file's column 'Event #' has values (0-based).", "Labelled 40 cells from 'gating.wsp': 7,482 CD4"]
COMMONMARK = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def _tokens(markdown: str) -> list:
    """Every token of `markdown` as CommonMark (with GFM tables and strikethrough) parses it, inline ones included."""
    tokens = []
    for token in COMMONMARK.parse(markdown):
        tokens += [token, *(token.children or [])]
    return tokens


def _shown(markdown: str) -> str:
    """The text a reader sees, without the invisible word joiners."""
    return "".join(t.content for t in _tokens(markdown) if t.type == "text").replace(WORD_JOINER, "")


@pytest.mark.parametrize("text", MARKUP)
def test_markup_in_user_text_shows_as_written(text):
    assert MARKUP[text] in {t.type for t in _tokens(text)}, "the case really is Markdown"
    escaped = literal(text)
    types = {t.type for t in _tokens(escaped)}
    assert types <= {"paragraph_open", "inline", "text", "paragraph_close"}, types
    assert _shown(escaped) == text.replace("\n", " ")


def test_backslashes_in_user_text_are_kept():
    text = "C:\\data\\*new*\\"
    assert _shown(literal(text)) == text


@pytest.mark.parametrize("text", SAFE)
def test_ordinary_names_are_left_as_they_are(text):
    assert literal(text) == text, "only characters that could start Markdown are escaped"


def test_streamlit_icons_colours_and_web_addresses_are_neutralised():
    """Streamlit replaces ':material/…:', emoji codes and bare web addresses in the parsed text, after the escapes
    are gone, and reads ':color[…]' as a directive: a word joiner splits the first, a backslash stops the last."""
    escaped = literal(":material/home: :red[alert] :+1: see http://evil.test or www.evil.test")
    assert ":material/" not in escaped and "\\[alert\\]" in escaped
    shown = "".join(t.content for t in _tokens(escaped) if t.type == "text")
    assert f":{WORD_JOINER}material/home" in shown and f":{WORD_JOINER}+1" in shown
    assert f"http:{WORD_JOINER}//evil" in shown and f"www{WORD_JOINER}.evil" in shown
    assert literal("$x^2$") == "\\$x^2\\$", "no math"
    assert literal("a\tb\x00c\u2028d") == "a b c d", "control characters and line breaks become spaces"


def test_a_dataset_named_as_an_image_is_captioned_without_one(workspace_dir):
    """The sidebar caption and the Data page show the name, its sample and a warning quoting it, with no image."""
    demo = make_demo(1_000, seed=5)
    dataset = replace(demo, name=EVIL_NAME, samples=[EVIL_NAME], warnings=[f"'{EVIL_NAME}' has a warning."])
    key = Workspace(workspace_dir).add_dataset(dataset)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params["dataset"] = key
    at.run()
    assert not at.exception, at.exception
    [caption] = [c.value for c in at.sidebar.caption if "cells" in c.value]
    assert "image" not in {t.type for t in _tokens(caption)}
    assert _shown(caption).startswith(EVIL_NAME)
    shown = [m.value for m in at.markdown if "**Samples:**" in m.value] + [w.value for w in at.warning]
    assert any(EVIL_NAME in _shown(value) for value in shown)
    for value in shown:
        assert not {"image", "link_open"} & {t.type for t in _tokens(value)}, value
