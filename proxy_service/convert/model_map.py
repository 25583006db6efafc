"""Client model name -> upstream model name, from the `MODEL_MAP` setting.

Syntax: comma-separated `pattern=target` rules. Patterns are fnmatch-style (`*`, `?`, `[...]`) and
case-insensitive; a pattern without wildcards is an exact name. The first matching rule wins, so
`*=default` belongs last. A name no rule matches (or an empty map) passes through unchanged.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

_BAD_CHARS = re.compile(r"[\s=]")
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True, slots=True)
class ModelMap:
    """Ordered rules compiled once at start-up; resolving is a few regex matches."""

    rules: tuple[tuple[re.Pattern[str], str], ...] = ()
    aliases: tuple[str, ...] = ()
    """The patterns that are plain names, as written: the model ids the map adds to the
    upstream's (GET /v1/models lists them)."""

    @classmethod
    def parse(cls, text: str) -> ModelMap:
        """Parse the setting; raise ValueError naming the bad rule so start-up fails loudly."""
        rules: list[tuple[re.Pattern[str], str]] = []
        aliases: dict[str, str] = {}
        for position, raw in enumerate(text.split(","), start=1):
            rule = raw.strip()
            if not rule:
                continue  # tolerate a trailing comma or blank line
            pattern, sep, target = (part.strip() for part in rule.partition("="))
            if not sep or not pattern or not target:
                raise ValueError(
                    f"MODEL_MAP rule {position} {rule!r}: expected 'pattern=target' "
                    "with a non-empty pattern and target"
                )
            if _BAD_CHARS.search(pattern) or _BAD_CHARS.search(target):
                raise ValueError(
                    f"MODEL_MAP rule {position} {rule!r}: pattern and target may not contain "
                    "whitespace or '=' (is a comma missing between two rules?)"
                )
            regex = re.compile(fnmatch.translate(pattern.lower()), re.IGNORECASE)
            rules.append((regex, target))
            if not _GLOB_CHARS.search(pattern):
                aliases.setdefault(pattern.lower(), pattern)
        return cls(tuple(rules), tuple(aliases.values()))

    def resolve(self, name: str) -> str:
        """The upstream model for `name`: the first matching rule's target, else `name` itself."""
        for regex, target in self.rules:
            if regex.match(name):
                return target
        return name
