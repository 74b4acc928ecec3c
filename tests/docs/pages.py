"""The documentation as the doc tests read it: which pages there are, their fenced blocks,
inline code, links and headings (with GitHub's anchors)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)
INLINE = re.compile(r"`([^`]+)`")
LINK = re.compile(r"(?<!\\)\[([^\]]*)\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6}) +(.+?) *#*$", re.M)


def docs_pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def component_readmes() -> list[Path]:
    """The READMEs next to the code (plc_sim/README.md, connectors/opcua/README.md, ...)."""
    return sorted(
        path
        for path in ROOT.rglob("README.md")
        if path != README
        and not any(p.startswith(".") or p == "node_modules" for p in path.relative_to(ROOT).parts)
    )


def all_pages() -> list[Path]:
    """README.md, every page of docs/ and the component READMEs."""
    return [README, *docs_pages(), *component_readmes()]


def name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Block:
    """A fenced code block: its language (`sh`, `yaml`, `text`, ... or '') and its text."""

    lang: str
    text: str

    def command_lines(self) -> Iterator[list[str]]:
        """Each command of an `sh` block as argv: backslash continuations joined, comments
        dropped, pipelines and `&`/`&&`/`;` lists split into their commands."""
        joined = self.text.replace("\\\n", " ")
        for line in joined.splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;")
            lexer.whitespace_split = True
            lexer.commenters = "#"
            argv: list[str] = []
            for token in lexer:
                if token and set(token) <= set("|&;"):
                    if argv:
                        yield argv
                    argv = []
                else:
                    argv.append(token)
            if argv:
                yield argv


def blocks(page_text: str) -> list[Block]:
    return [Block(m.group(1), m.group(2)) for m in FENCE.finditer(page_text)]


def prose(page_text: str) -> str:
    """The page without its fenced blocks (their lines kept empty, so line numbers hold)."""
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), page_text)


def inline_code(page_text: str) -> list[str]:
    """Every inline code span of the prose, whitespace (line breaks too) made single spaces;
    a span never runs over a blank line."""
    return [
        " ".join(m.group(1).split())
        for m in INLINE.finditer(prose(page_text))
        if "\n\n" not in m.group(1)
    ]


def links(page_text: str) -> list[str]:
    """The targets of every link and image of the prose."""
    return [m.group(2) for m in LINK.finditer(prose(page_text))]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation (but - and _) dropped,
    spaces made hyphens."""
    plain = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", plain).replace(" ", "-")


def anchors(page_text: str) -> set[str]:
    """Every anchor the page's headings make, duplicates numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    found = set()
    for match in HEADING.finditer(prose(page_text)):
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found
