"""The root of kdumpkit's errors.

Every error kdumpkit raises on purpose -- a bad, truncated or damaged dump
(:class:`kdumpkit.dump.errors.DumpError` and its subclasses), a bad config file, a
service step that cannot be done -- is a :class:`KdumpkitError` whose message is one
line saying what is wrong.  The CLI prints that line and exits 2; anything else that
escapes a verb is a bug in kdumpkit, not in the input.
"""

from __future__ import annotations


class KdumpkitError(Exception):
    """Base class of every error kdumpkit raises; the message is one line."""
