"""A user's regular expression, bounded before it is compiled.

The ``regex`` module's timeout bounds *matching*, not *compiling*: compiling unrolls every
repeat its minimum number of times in C, so ``x{2147483647}`` asks for tens of gigabytes
before the first byte is searched, and ``(?:(?:x{1000}){1000}){1000}`` multiplies. A
pattern is therefore parsed first, by the module's own parser (what is measured is what
would be compiled), and refused with the reason unless it stays within:

- ``MAX_REPEAT``: the largest count in ``{m}``, ``{m,}`` or ``{m,n}``;
- ``MAX_NESTING``: groups, repeats and lookarounds inside one another;
- ``MAX_SIZE``: the parsed nodes once every repeat is unrolled its minimum number of times
  — the size of the compiled program (a few hundred bytes per node, so ≤ a few MiB).

Only then is it compiled, outside the module's cache (500 patterns kept for ever), with
every failure the compiler can raise turned into a ``BadPattern``. The text's length is
bounded by the caller (``services.search_params``). Matching is bounded separately: by the
deadline, and by the size of the text one call sees (``search.REGEX_WINDOW``).
"""

import regex
from regex import _regex_core

MAX_REPEAT = 1000
MAX_NESTING = 20
MAX_SIZE = 10_000

# Nodes that put what they hold one level deeper.
_NESTING = (_regex_core.Group, _regex_core.GreedyRepeat, _regex_core.LookAround,
            _regex_core.LookAroundConditional, _regex_core.Atomic, _regex_core.Conditional,
            _regex_core.Fuzzy)


class BadPattern(ValueError):
    pass


def _parse(raw, flags):
    """The parse tree of ``raw``, as ``regex.compile`` would build it."""
    global_flags = flags
    while True:
        source = _regex_core.Source(raw)
        info = _regex_core.Info(global_flags, source.char_type, {})
        info.guess_encoding = regex.ASCII
        source.ignore_space = bool(info.flags & regex.VERBOSE)
        try:
            parsed = _regex_core._parse_pattern(source, info)
        except _regex_core._UnscopedFlagSet:
            # An inline flag for the whole pattern (``(?x)``…): parse again with it.
            global_flags = info.global_flags
            continue
        if not source.at_end():
            raise regex.error("unbalanced parenthesis", raw, source.pos)
        return parsed


def _children(node):
    for value in vars(node).values():
        if isinstance(value, _regex_core.RegexBase):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from (item for item in value if isinstance(item, _regex_core.RegexBase))


def _size(node, depth):
    """Nodes of ``node`` once its repeats are unrolled; refuses what is out of bounds."""
    if isinstance(node, _NESTING):
        depth += 1
        if depth > MAX_NESTING:
            raise BadPattern(f"groups, repeats and lookarounds nest at most {MAX_NESTING} "
                             "deep")
    times = 1
    if isinstance(node, _regex_core.GreedyRepeat):  # lazy and possessive ones too
        largest = max(node.min_count, node.max_count or 0)
        if largest > MAX_REPEAT:
            raise BadPattern(f"a repeat count is {largest}; at most {MAX_REPEAT} "
                             "(use + or * for more)")
        times = max(node.min_count, 1)
    inner = 0
    for child in _children(node):
        inner += _size(child, depth)
        if inner * times > MAX_SIZE:
            break
    total = 1 + inner * times
    if total > MAX_SIZE:
        raise BadPattern("the regular expression is too large once its repeats are "
                         f"counted (more than {MAX_SIZE} parts); use smaller counts")
    return total


def check(raw, flags=0):
    """Parse ``raw`` (bytes) and refuse it unless it is within the bounds above."""
    try:
        _size(_parse(raw, flags), 0)
    except BadPattern:
        raise
    except (regex.error, ValueError) as exc:  # ValueError: incompatible inline flags
        raise BadPattern(f"not a valid regular expression: {exc}") from None
    except RecursionError:
        raise BadPattern("not a valid regular expression: nested too deeply") from None


def compile_pattern(raw, flags=0):
    """``raw`` compiled, once ``check`` accepts it; every compiler failure a BadPattern."""
    check(raw, flags)
    try:
        return regex.compile(raw, flags, cache_pattern=False)
    except (regex.error, ValueError) as exc:
        raise BadPattern(f"not a valid regular expression: {exc}") from None
    except (MemoryError, OverflowError, RecursionError):
        raise BadPattern("the regular expression is too large to compile") from None
