"""The words of ``kdumpkit crash``'s prompt, shared by the prompt loop
(:mod:`kdumpkit.cli.crash`) and its completer (:mod:`kdumpkit.cli.crash_completion`)."""

from __future__ import annotations

PROMPT = "crash> "
#: what ends the session, as in crash
EXIT_WORDS = frozenset({"exit", "q", "quit"})
