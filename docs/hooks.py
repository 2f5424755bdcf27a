"""MkDocs hook: the docstrings' reST roles (``:class:`~emovox.x.Y```) shown as code, linked where documented.

The docstrings of emovox use Sphinx-style roles. mkdocstrings renders them as the role's name followed by a code
span (":class:<code>Y</code>"); this hook drops the role's name, shortens a ``~``-prefixed target to its last
component, as Sphinx does, and links a fully dotted target to its entry when the page documents it.
"""
from __future__ import annotations

import re

ROLE = re.compile(r":(?:py:)?(?:func|meth|class|mod|attr|data|exc|obj|const):<code>(~?)([^<]*)</code>")
ANCHOR = re.compile(r'\sid="([A-Za-z_][\w.]*)"')


def on_page_content(html: str, page, config, files) -> str:  # noqa: ARG001 (the hook's signature)
    anchors = set(ANCHOR.findall(html))

    def code(m: re.Match) -> str:
        tilde, target = m.groups()
        shown = target.rsplit(".", 1)[-1] if tilde else target
        if target in anchors:
            return f'<a href="#{target}"><code>{shown}</code></a>'
        return f"<code>{shown}</code>"

    return ROLE.sub(code, html)
