"""mkdocs hook: the docstrings' Sphinx roles (``:func:`x```) as links in the API reference.

The docstrings cross-reference with Sphinx roles. mkdocstrings renders the role's name as text
before the code span (``:func:<code>x</code>``); this hook turns that into the code span alone,
linked through mkdocs-autorefs when ``x`` is a full dotted path that the API reference
documents (``~a.b.c`` shows as ``c``), and left unlinked otherwise.
"""

from __future__ import annotations

import re
from typing import Any

ROLE = re.compile(
    r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const):<code>(~?)([^<]+)</code>"
)


def _replace(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2).strip()
    shown = target.rsplit(".", 1)[-1] if short else target
    if "." not in target or target.startswith("."):
        return f"<code>{shown}</code>"
    return f'<autoref optional identifier="{target}"><code>{shown}</code></autoref>'


def on_page_content(html: str, **kwargs: Any) -> str:
    """Every page's HTML with its role-prefixed code spans replaced (see the module)."""
    return ROLE.sub(_replace, html)
