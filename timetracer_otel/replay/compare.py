"""Recorded traffic as regression tests: a replayed response compared with the recorded one.

:class:`Answer` is a response as compared (the cassette's, or the one the app just gave); :func:`compare`
lists what differs (status, headers, JSON paths of a JSON body, a unified diff of a text body, sizes and the
first differing byte of a binary one), minus the noise :class:`NoiseRules` ignore: header names and JSON
paths (a small JSONPath subset: ``$.a.b``, ``$.items[*].id``, ``$..id``, ``$['odd key']``), from the command
line and from ``[tool.timetracer.replay]`` in ``pyproject.toml`` (:func:`load_noise_config`).
"""

from __future__ import annotations

import difflib
import enum
import json
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from timetracer_otel.cassette.content_coding import decode_content
from timetracer_otel.cassette.model import Cassette
from timetracer_otel.errors import ConfigurationError

__all__ = [
    "DEFAULT_IGNORED_HEADERS",
    "NOTHING_IGNORED",
    "Answer",
    "Comparison",
    "Difference",
    "JsonPath",
    "Noise",
    "NoiseConfig",
    "NoiseRules",
    "PathPart",
    "compare",
    "find_pyproject",
    "format_path",
    "general_path",
    "load_noise_config",
    "parse_paths",
]

#: Never compared: ``date`` changes every second; ``server`` names the serving software, not the app's answer (and
#: in-process replay has no server); ``content-length`` follows the body, which is compared itself (an ignored
#: JSON field that changes length must not fail the header too); the hop-by-hop ``connection``, ``keep-alive``
#: and ``transfer-encoding`` describe the connection the server chose, not the answer.
DEFAULT_IGNORED_HEADERS = ("connection", "content-length", "date", "keep-alive", "server", "transfer-encoding")

#: How much of a diff a failure shows.
MAX_JSON_DIFFERENCES = 20
MAX_TEXT_DIFF_LINES = 30
MAX_LINE = 160
MAX_VALUE = 80
MAX_ERROR_LINES = 12

_SECTION = ("tool", "timetracer", "replay")
_KEYS = ("ignore_headers", "ignore_paths")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_NAME = re.compile(r"[^.\[\]\s]+")
_TEXTUAL = ("text/", "json", "xml", "javascript", "x-www-form-urlencoded", "yaml", "csv")


def _printable(text: str) -> str:
    """Control characters escaped: a response must not move the terminal's cursor or recolour it."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- JSON paths --------------------------------------------------------------------------------------------


class _Step(enum.Enum):
    ANY = "*"  # any key or index: .* or [*]
    DESCEND = ".."  # any depth, then the next step


#: One step of a concrete path: a key or an index.
PathPart = str | int
_PatternPart = str | int | _Step


def format_path(parts: Sequence[PathPart | _Step]) -> str:
    """``("items", 0, "id")`` as ``$.items[0].id``; odd keys as ``$['a b']``; a wildcard as ``[*]``."""
    text = "$"
    for part in parts:
        if isinstance(part, _Step):
            text += "[*]"
        elif isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER.match(part):
            text += f".{part}"
        else:
            escaped = part.replace("\\", "\\\\").replace("'", "\\'")
            text += f"['{escaped}']"
    return text


def general_path(parts: Sequence[PathPart]) -> str:
    """A concrete path with every index as ``[*]``: the form a noise rule for every item of a list takes."""
    return format_path([_Step.ANY if isinstance(part, int) else part for part in parts])


@dataclass(frozen=True)
class JsonPath:
    """A JSONPath subset naming fields of a JSON body: ``$`` (the whole body), ``.key``, ``['key']``, ``[N]``,
    ``.*`` / ``[*]`` (any key or item) and ``..`` (at any depth). A path covers everything below it too."""

    text: str
    parts: tuple[_PatternPart, ...]

    @classmethod
    def parse(cls, text: str) -> JsonPath:
        """Raise ``ValueError`` saying what is wrong."""
        source = text.strip()
        if not source.startswith("$"):
            raise ValueError("a JSON path starts with $")
        parts: list[_PatternPart] = []
        i = 1
        while i < len(source):
            if source.startswith("..", i):
                parts.append(_Step.DESCEND)
                i += 2
                if i < len(source) and source[i] == "[":
                    continue
                i = cls._name(source, i, parts)
            elif source[i] == ".":
                i = cls._name(source, i + 1, parts)
            elif source[i] == "[":
                i = cls._bracket(source, i, parts)
            else:
                raise ValueError(f"unexpected {source[i]!r} at position {i}")
        if parts and parts[-1] is _Step.DESCEND:
            raise ValueError(".. must be followed by a key, * or [...]")
        return cls(source, tuple(parts))

    @staticmethod
    def _name(source: str, i: int, parts: list[_PatternPart]) -> int:
        if source.startswith("*", i):
            parts.append(_Step.ANY)
            return i + 1
        match = _NAME.match(source, i)
        if match is None:
            raise ValueError(f"a key is missing at position {i}")
        parts.append(match.group())
        return match.end()

    @staticmethod
    def _bracket(source: str, i: int, parts: list[_PatternPart]) -> int:
        quote = source[i + 1 : i + 2]
        if quote in ("'", '"'):
            key: list[str] = []
            j = i + 2
            while j < len(source) and source[j] != quote:
                escaped = source[j] == "\\" and j + 1 < len(source)
                key.append(source[j + 1] if escaped else source[j])
                j += 2 if escaped else 1
            if source[j + 1 : j + 2] != "]":
                raise ValueError(f"the quoted key at position {i + 1} is not closed by {quote}]")
            parts.append("".join(key))
            return j + 2
        end = source.find("]", i)
        if end < 0:
            raise ValueError(f"[ at position {i} is not closed")
        inner = source[i + 1 : end].strip()
        if inner == "*":
            parts.append(_Step.ANY)
        elif inner.isdigit():
            parts.append(int(inner))
        else:
            raise ValueError(f"[{inner}] is neither an index, * nor a quoted key")
        return end + 1

    def matches(self, path: Sequence[_PatternPart]) -> bool:
        """Whether ``path`` (a concrete path, or a general one with ``[*]``) is this one or lies below it."""
        return _matches(self.parts, 0, path, 0)

    def __str__(self) -> str:
        return self.text


def _matches(pattern: Sequence[_PatternPart], i: int, path: Sequence[_PatternPart], j: int) -> bool:
    if i == len(pattern):
        return True  # what lies below an ignored field is ignored with it
    step = pattern[i]
    if step is _Step.DESCEND:
        return any(_matches(pattern, i + 1, path, k) for k in range(j, len(path)))
    if j == len(path):
        return False
    part = path[j]
    if step is _Step.ANY or (type(step) is type(part) and step == part):
        return _matches(pattern, i + 1, path, j + 1)
    return False


# -- noise rules and their configuration ------------------------------------------------------------------


@dataclass(frozen=True)
class NoiseRules:
    """What a comparison ignores: header names (case-insensitive) and JSON paths of JSON bodies."""

    headers: frozenset[str] = frozenset()
    paths: tuple[JsonPath, ...] = ()

    @classmethod
    def build(cls, headers: Iterable[str] = (), paths: Iterable[JsonPath] = (), *, defaults: bool = True) -> NoiseRules:
        names = {name.strip().lower() for name in headers if name.strip()}
        if defaults:
            names.update(DEFAULT_IGNORED_HEADERS)
        unique: dict[str, JsonPath] = {}
        for path in paths:
            unique.setdefault(path.text, path)
        return cls(frozenset(names), tuple(unique.values()))

    def ignores_header(self, name: str) -> bool:
        return name.lower() in self.headers

    def ignores_path(self, path: Sequence[PathPart]) -> bool:
        return any(rule.matches(path) for rule in self.paths)


#: Compares everything, even the headers :data:`DEFAULT_IGNORED_HEADERS` names.
NOTHING_IGNORED = NoiseRules()


def parse_paths(values: Iterable[str], where: str) -> tuple[JsonPath, ...]:
    """Raise :class:`ConfigurationError` naming ``where`` (an option or a file's setting) for a bad path."""
    parsed = []
    for value in values:
        try:
            parsed.append(JsonPath.parse(value))
        except ValueError as exc:
            expected = f"a JSON path such as $.a.b, $.items[*].id or $..id ({exc})"
            raise ConfigurationError(where, value, expected) from None
    return tuple(parsed)


@dataclass(frozen=True)
class NoiseConfig:
    """The ``[tool.timetracer.replay]`` settings of a ``pyproject.toml`` (empty when there is none)."""

    headers: tuple[str, ...] = ()
    paths: tuple[JsonPath, ...] = ()
    #: The file they came from.
    source: Path | None = None

    def rules(self, headers: Iterable[str] = (), paths: Iterable[JsonPath] = ()) -> NoiseRules:
        """These settings plus ``headers`` and ``paths`` (from the command line), plus the defaults."""
        return NoiseRules.build([*self.headers, *headers], [*self.paths, *paths])


def find_pyproject(start: Path) -> Path | None:
    """The nearest ``pyproject.toml`` in ``start`` or above it."""
    for folder in (start.resolve(), *start.resolve().parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_noise_config(start: Path, explicit: Path | None = None) -> NoiseConfig:
    """``[tool.timetracer.replay]`` of ``explicit``, else of the nearest ``pyproject.toml`` from ``start`` up.

    Raise :class:`ConfigurationError` for an unreadable file, an unknown key or a value of the wrong type.
    """
    path = explicit if explicit is not None else find_pyproject(start)
    if path is None:
        return NoiseConfig()
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError("--config", str(path), "an existing TOML file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(str(path), "(unreadable)", f"a readable TOML file ({exc})") from None
    table: Any = document
    for key in _SECTION:
        table = table.get(key) if isinstance(table, dict) else None
    if table is None:
        if explicit is not None:
            raise ConfigurationError("--config", str(path), f"a TOML file with a [{'.'.join(_SECTION)}] table")
        return NoiseConfig()
    where = f"{path} [{'.'.join(_SECTION)}]"
    if not isinstance(table, dict):
        raise ConfigurationError(where, repr(table), "a table")
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise ConfigurationError(where, ", ".join(unknown), f"only the settings {' and '.join(_KEYS)}")
    lists: dict[str, list[str]] = {}
    for key in _KEYS:
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigurationError(f"{where} {key}", repr(value), "a list of strings")
        lists[key] = value
    return NoiseConfig(
        headers=tuple(lists["ignore_headers"]),
        paths=parse_paths(lists["ignore_paths"], f"{where} ignore_paths"),
        source=path,
    )


# -- answers --------------------------------------------------------------------------------------------


def _type_name(error: BaseException) -> str:
    kind = type(error)
    return f"{kind.__module__}.{kind.__qualname__}"


def _header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in headers if key.lower() == name), None)


@dataclass(frozen=True)
class Answer:
    """A response as compared: the recorded one (:meth:`recorded`) or the one the app gave now (:meth:`live`)."""

    #: None when the app sent no response (it raised first).
    status: int | None
    headers: tuple[tuple[str, str], ...] = ()
    #: Decoded from its content-coding when the coding is known, else as sent.
    body: bytes = b""
    #: The whole body's size, when more than ``body`` holds.
    size: int | None = None
    #: Why only the beginning of the body is known (cut at the size cap, or its reader stopped), else None.
    partial: str | None = None
    #: The exception the app raised while serving (``module.Type``) and its message.
    error_type: str | None = None
    error_message: str | None = None

    @classmethod
    def recorded(cls, cassette: Cassette) -> Answer:
        error = cassette.error
        error_type = error.type if error is not None else None
        message = error.message if error is not None else None
        response = cassette.response
        if response is None:
            return cls(None, error_type=error_type, error_message=message)
        body = response.body
        data = body.data if body is not None else b""
        if body is not None and body.content_coding is not None:
            data = decode_content(data, body.content_coding) or data
        partial = None
        size = None
        if body is not None and body.truncated:
            partial = f"cut at TIMETRACER_MAX_BODY_BYTES when recorded: {len(body.data)} of {body.size} bytes stored"
            size = body.size
        elif body is not None and not body.complete:
            partial = f"its reader stopped after {len(body.data)} bytes when it was recorded"
        return cls(response.status, tuple(response.headers), data, size, partial, error_type, message)

    @classmethod
    def live(
        cls,
        status: int | None,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        error: BaseException | None = None,
    ) -> Answer:
        coding = _header(headers, "content-encoding")
        if coding:
            body = decode_content(body, coding) or body
        return cls(
            status,
            tuple(headers),
            body,
            error_type=_type_name(error) if error is not None else None,
            error_message=str(error) if error is not None else None,
        )

    def content_type(self) -> str:
        return (_header(self.headers, "content-type") or "").lower()


# -- comparison -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """One thing that differs. ``kind`` is ``status``, ``error``, ``header``, ``body``; ``where`` is the header
    name or the JSON path's parts (None for a whole body); ``lines`` is how it reads."""

    kind: str
    lines: tuple[str, ...]
    where: str | tuple[PathPart, ...] | None = None


@dataclass(frozen=True)
class Comparison:
    differences: tuple[Difference, ...] = ()
    #: What the reader should know although nothing failed because of it (a body compared only in part).
    notes: tuple[str, ...] = ()
    #: The live exception, shown under a failure (often the reason: a replay miss).
    raised: str | None = None

    @property
    def ok(self) -> bool:
        return not self.differences

    def render(self) -> list[str]:
        """The differences, one or more lines each, then the notes, then the exception the app raised."""
        lines = [line for difference in self.differences for line in difference.lines]
        lines += [f"note: {note}" for note in self.notes]
        if self.raised and self.differences:
            error_lines = self.raised.splitlines()
            shown = error_lines[:MAX_ERROR_LINES]
            if len(error_lines) > MAX_ERROR_LINES:
                shown.append(f"... ({len(error_lines) - MAX_ERROR_LINES} more lines)")
            lines.append(f"the app raised {shown[0]}")
            lines += [f"  {line}" for line in shown[1:]]
        return [_printable(line) for line in lines]


def compare(recorded: Answer, live: Answer, rules: NoiseRules = NOTHING_IGNORED) -> Comparison:
    """What differs between the recorded answer and the live one, minus what ``rules`` ignore."""
    differences: list[Difference] = []
    notes: list[str] = []
    raised = f"{live.error_type}: {live.error_message}" if live.error_type else None
    if recorded.status is None or live.status is None:
        differences += _no_response(recorded, live)
        return Comparison(tuple(differences), (), raised)
    if recorded.status != live.status:
        differences.append(Difference("status", (f"status: {recorded.status} -> {live.status}",)))
    differences += _headers(recorded, live, rules)
    body, note = _body(recorded, live, rules)
    differences += body
    if note:
        notes.append(note)
    differences += _error(recorded, live)
    return Comparison(tuple(differences), tuple(notes), raised)


def _raised(answer: Answer) -> str:
    return f"the app raised {answer.error_type}" if answer.error_type else "the app sent none"


def _no_response(recorded: Answer, live: Answer) -> list[Difference]:
    if recorded.status is None and live.status is None:
        if recorded.error_type and live.error_type and recorded.error_type != live.error_type:
            return [Difference("error", (f"error: {recorded.error_type} -> {live.error_type}",))]
        return []
    old = str(recorded.status) if recorded.status is not None else f"no response ({_raised(recorded)})"
    new = str(live.status) if live.status is not None else f"no response ({_raised(live)})"
    return [Difference("status", (f"status: {old} -> {new}",))]


def _error(recorded: Answer, live: Answer) -> list[Difference]:
    """A recorded exception is expected again (the framework answered 500 both times); another one, or one
    where the recording had none, is drift even when the response looks the same."""
    if live.error_type is None or live.error_type == recorded.error_type:
        return []
    old = recorded.error_type or "none"
    return [Difference("error", (f"error: {old} -> {live.error_type}",))]


def _grouped(headers: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        grouped.setdefault(name.lower(), []).append(value)
    return grouped


def _values(values: list[str]) -> str:
    return ", ".join(_clip(json.dumps(value, ensure_ascii=False), MAX_VALUE) for value in values)


def _headers(recorded: Answer, live: Answer, rules: NoiseRules) -> list[Difference]:
    old, new = _grouped(recorded.headers), _grouped(live.headers)
    differences = []
    for name in sorted(old.keys() | new.keys()):
        if rules.ignores_header(name) or old.get(name) == new.get(name):
            continue
        if name not in new:
            line = f"header {name}: removed {_values(old[name])}"
        elif name not in old:
            line = f"header {name}: added {_values(new[name])}"
        else:
            line = f"header {name}: {_values(old[name])} -> {_values(new[name])}"
        differences.append(Difference("header", (line,), name))
    return differences


def _body(recorded: Answer, live: Answer, rules: NoiseRules) -> tuple[list[Difference], str | None]:
    if recorded.partial is not None:
        return _partial_body(recorded, live)
    if recorded.body == live.body:
        return [], None
    old_json, new_json = _json(recorded), _json(live)
    if old_json is not None and new_json is not None:
        return _json_differences(old_json[0], new_json[0], rules), None
    if _is_text(recorded) and _is_text(live):
        return [_text_difference(recorded.body, live.body)], None
    return [_binary_difference(recorded.body, live.body)], None


def _partial_body(recorded: Answer, live: Answer) -> tuple[list[Difference], str]:
    """Only the recorded body's beginning is known: compare that, and the size when it is known."""
    stored = recorded.body
    note = f"the body was compared on its first {len(stored)} bytes only ({recorded.partial})"
    differences = []
    if recorded.size is not None and len(live.body) != recorded.size:
        differences.append(Difference("body", (f"body size: {recorded.size} -> {len(live.body)} bytes",)))
    prefix = live.body[: len(stored)]
    if prefix != stored:
        if _is_text(recorded) and _is_text(live):
            differences.append(_text_difference(stored, prefix, "(its first bytes) "))
        else:
            differences.append(_binary_difference(stored, prefix, "(its first bytes) "))
    return differences, note


def _json(answer: Answer) -> tuple[Any] | None:
    """``(value,)`` when the body is JSON (by its content type, or because it parses as an object or array)."""
    body = answer.body.strip()
    if not body or ("json" not in answer.content_type() and body[:1] not in (b"{", b"[")):
        return None
    try:
        return (json.loads(body),)
    except ValueError:
        return None


def _same(old: Any, new: Any) -> bool:
    # JSON keeps types apart that Python's == does not: true is not 1, and 1 is not 1.0.
    return type(old) is type(new) and old == new


def _json_differences(old: Any, new: Any, rules: NoiseRules) -> list[Difference]:
    found: list[Difference] = []
    _walk(old, new, (), rules, found)
    if len(found) > MAX_JSON_DIFFERENCES:
        more = len(found) - MAX_JSON_DIFFERENCES
        last = Difference("body", (f"... and {more} more differences in the body",))
        found = [*found[:MAX_JSON_DIFFERENCES], last]
    return found


def _shown(value: Any) -> str:
    return _clip(json.dumps(value, ensure_ascii=False, separators=(",", ":")), MAX_VALUE)


def _walk(old: Any, new: Any, path: tuple[PathPart, ...], rules: NoiseRules, found: list[Difference]) -> None:
    if rules.ignores_path(path):
        return
    children: list[tuple[PathPart, Any, Any]] = []
    if isinstance(old, dict) and isinstance(new, dict):
        keys = [*old, *(key for key in new if key not in old)]
        children = [(key, old.get(key, _MISSING), new.get(key, _MISSING)) for key in keys]
    elif isinstance(old, list) and isinstance(new, list):
        children = [
            (n, old[n] if n < len(old) else _MISSING, new[n] if n < len(new) else _MISSING)
            for n in range(max(len(old), len(new)))
        ]
    elif not _same(old, new):
        found.append(Difference("body", (f"body {format_path(path)}: {_shown(old)} -> {_shown(new)}",), path))
        return
    for part, old_child, new_child in children:
        child = (*path, part)
        if old_child is _MISSING:
            if not rules.ignores_path(child):
                found.append(Difference("body", (f"body {format_path(child)}: added {_shown(new_child)}",), child))
        elif new_child is _MISSING:
            if not rules.ignores_path(child):
                found.append(Difference("body", (f"body {format_path(child)}: removed {_shown(old_child)}",), child))
        else:
            _walk(old_child, new_child, child, rules, found)


#: A key or item one side lacks.
_MISSING = object()


def _is_text(answer: Answer) -> bool:
    content_type = answer.content_type()
    if any(marker in content_type for marker in _TEXTUAL) or "charset=" in content_type:
        return True
    if content_type:
        return False
    try:
        answer.body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _text_difference(old: bytes, new: bytes, qualifier: str = "") -> Difference:
    old_lines = old.decode("utf-8", "replace").splitlines()
    new_lines = new.decode("utf-8", "replace").splitlines()
    diff = list(difflib.unified_diff(old_lines, new_lines, "recorded", "replayed", lineterm="", n=2))
    if not diff:  # only line endings or a final newline differ
        diff = [f"(only line endings differ: {len(old)} -> {len(new)} bytes)"]
    shown = [f"  {_clip(line, MAX_LINE)}" for line in diff[:MAX_TEXT_DIFF_LINES]]
    if len(diff) > MAX_TEXT_DIFF_LINES:
        shown.append(f"  ... ({len(diff) - MAX_TEXT_DIFF_LINES} more diff lines)")
    return Difference("body", (f"body {qualifier}(text) differs:", *shown))


def _binary_difference(old: bytes, new: bytes, qualifier: str = "") -> Difference:
    offset = next((n for n, (a, b) in enumerate(zip(old, new, strict=False)) if a != b), min(len(old), len(new)))
    return Difference(
        "body", (f"body {qualifier}(binary): {len(old)} -> {len(new)} bytes, first difference at byte {offset}",)
    )


# -- noise detection --------------------------------------------------------------------------------------


@dataclass
class Noise:
    """Fields that differed between two replays of the same cassettes."""

    headers: set[str] = field(default_factory=set)
    paths: set[str] = field(default_factory=set)
    #: Differences no rule can hide (a status, a text or binary body), as readable lines.
    other: list[str] = field(default_factory=list)

    def add(self, comparison: Comparison, label: str) -> list[str]:
        """Take in the differences of two live runs of one cassette; return what differed, briefly."""
        brief = []
        for difference in comparison.differences:
            if difference.kind == "header" and isinstance(difference.where, str):
                self.headers.add(difference.where)
                brief.append(f"header {difference.where}")
            elif difference.kind == "body" and isinstance(difference.where, tuple):
                path = general_path(difference.where)
                self.paths.add(path)
                brief.append(path)
            else:
                self.other.append(f"{label}: {difference.lines[0]}")
                brief.append(difference.lines[0])
        return brief

    def proposal(self, config_headers: Iterable[str] = (), config_paths: Iterable[str] = ()) -> list[str]:
        """A ``[tool.timetracer.replay]`` block with what was found plus what is configured already."""
        headers = sorted(({h.lower() for h in config_headers} | self.headers) - set(DEFAULT_IGNORED_HEADERS))
        paths = _uncovered(set(config_paths) | self.paths)
        return [
            "[tool.timetracer.replay]",
            f"ignore_headers = [{', '.join(json.dumps(h) for h in headers)}]",
            f"ignore_paths = [{', '.join(json.dumps(p) for p in paths)}]",
        ]


def _uncovered(texts: Iterable[str]) -> list[str]:
    """The paths no other one covers (``$.items[*]`` covers ``$.items[*].id``), sorted."""
    parsed = {text: JsonPath.parse(text) for text in texts}
    return sorted(
        text for text, path in parsed.items()
        if not any(other != text and rule.matches(path.parts) for other, rule in parsed.items())
    )
