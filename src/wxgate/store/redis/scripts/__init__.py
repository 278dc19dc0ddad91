"""The Lua scripts of the Redis store: every state change that touches more than one key is one
script, so a crash between two commands can never lose, duplicate or half-move a message.

Each script is a .lua file here (package data); `script` puts together the text Redis runs: the
`#!lua` line, the Python constants it names (`local NAME = value`), the shared snippets it
includes (message scripts include prelude.lua), then its own file.

Scripts name most of their keys from a prefix (ARGV) and declare one key of that prefix's
slot (KEYS[1], connection.py). A message script's prefix is one app's, `{prefix:app}`, so
every key it touches is in that app's hash slot and it runs on the shard that owns it, on
Redis Cluster too; proxies that refuse `numkeys = 0` accept them. Redis >= 7.0 (the `#!lua`
line). Message scripts share prelude.lua and take ARGV[1..4] = the app's prefix, consumer
group, now (epoch s as an exact decimal string), and the TTL (s) Redis keeps a finished
message as a safety net should `prune` stop running. Writing scripts start with `#!lua`:
Redis then refuses them up front when it is out of memory instead of failing half-way, which
keeps enqueue all-or-nothing.

Cost rules (Redis runs one script at a time, so its time per message caps the whole
deployment): counters are tallied in Lua and written once per script call; acked stream entries
are not deleted one by one but trimmed below the oldest unacked entry once per lease call; the
finished-message index is a list (RPUSH/LPOP), not a sorted set.
"""

from __future__ import annotations

from importlib import resources

from wxgate.store.redis.codec import DEAD_TIME_WIDTH, MESSAGE_FIELDS

Constant = int | tuple[str, ...]

_FILES = resources.files(__name__)
_loaded: set[str] = set()


def _read(name: str) -> str:
    _loaded.add(name)
    return (_FILES / f"{name}.lua").read_text(encoding="utf-8")


def _lua(value: Constant) -> str:
    if isinstance(value, int):
        return str(value)
    if not all(v.isidentifier() for v in value):  # names only: nothing to quote
        raise ValueError(f"not a list of names: {value!r}")
    return "{" + ", ".join(f"'{v}'" for v in value) + "}"


def script(
    name: str, *, include: tuple[str, ...] = (), flags: str = "", **constants: Constant
) -> str:
    """The text of `name`.lua as Redis runs it: `#!lua` (with `flags`), then `constants` as
    Lua locals, then the `include` snippets in order, then the script itself."""
    shebang = f"#!lua flags={flags}\n" if flags else "#!lua\n"
    defined = "".join(f"local {k} = {_lua(v)}\n" for k, v in constants.items())
    return shebang + defined + "".join(map(_read, include)) + _read(name)


def message_script(name: str) -> str:
    """A script that changes messages: prelude.lua first (see the module docstring)."""
    return script(
        name,
        include=("prelude",),
        MESSAGE_FIELDS=MESSAGE_FIELDS,
        DEAD_TIME_WIDTH=DEAD_TIME_WIDTH,
    )


def available() -> frozenset[str]:
    """Every script and snippet shipped here, by name (file name without .lua)."""
    return frozenset(
        f.name.removesuffix(".lua") for f in _FILES.iterdir() if f.name.endswith(".lua")
    )


def loaded() -> frozenset[str]:
    """The scripts and snippets read so far (all of them, once the store's modules are
    imported: a file missing here is an orphan)."""
    return frozenset(_loaded)
