"""The pages' HTML, from Jinja2 templates in ``templates/`` (autoescaped, always).

In: a template name and its values. Out: the page's HTML; and the two static files the pages
use (our stylesheet and a few lines of our own script for live progress: no third-party
JavaScript). Every value from outside (file names, cells, messages) is escaped by Jinja2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATES = Path(__file__).parent / "templates"
STATIC = {"site.css": "text/css", "progress.js": "text/javascript"}


class Pages:
    """Renders the service's templates."""

    def __init__(self, folder: Path = TEMPLATES) -> None:
        self.folder = folder
        self.env = Environment(
            loader=FileSystemLoader(folder), autoescape=True, undefined=StrictUndefined
        )
        self.env.filters["label"] = lambda value: str(value).replace("_", " ")

    def render(self, name: str, context: dict[str, Any]) -> str:
        """The HTML of template ``name`` with ``context``."""
        return self.env.get_template(name).render(**context)

    def static(self, name: str) -> tuple[bytes, str] | None:
        """A static file's bytes and media type, for the two names the pages use only."""
        media_type = STATIC.get(name)
        if media_type is None:
            return None
        return (self.folder / name).read_bytes(), media_type
