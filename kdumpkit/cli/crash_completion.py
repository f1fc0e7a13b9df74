"""Tab completion at the ``kdumpkit crash`` prompt.

Kept apart from kdumpkit.cli.crash so that ``-c`` runs do not import prompt_toolkit.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from kdumpkit.cli.crash_words import EXIT_WORDS

if TYPE_CHECKING:
    from kdumpkit.analyze.session import Session


class CommandCompleter(Completer):
    """prompt_toolkit completion: command names first, then kernel symbol names."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._symbols: list[str] | None = None

    def symbols(self) -> list[str]:
        """Every symbol name, sorted, read once."""
        if self._symbols is None:
            names = {symbol.name for symbol in self.session.prog.symbols()}
            self._symbols = sorted(names)
        return self._symbols

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterator[Completion]:
        before = document.text_before_cursor
        word = document.get_word_before_cursor(WORD=True)
        if " " not in before.lstrip():
            names = sorted(set(self.session.commands) | EXIT_WORDS | {"set"})
            for name in names:
                if name.startswith(word):
                    yield Completion(name, start_position=-len(word))
            return
        if len(word) < 2:
            return
        symbols = self.symbols()
        start = bisect.bisect_left(symbols, word)
        for name in symbols[start : start + 200]:
            if not name.startswith(word):
                break
            yield Completion(name, start_position=-len(word))
