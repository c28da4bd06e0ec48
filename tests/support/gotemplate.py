"""Render a Helm chart with a small subset of Go's text/template and Helm's functions.

No ``helm`` binary is available to the test runs (no package registry they use ships one), so
the chart's tests render it with this. The chart's templates keep to the subset; anything
outside it is an error, never silently wrong output.

Syntax: ``{{ }}`` actions with ``{{-``/``-}}`` trimming and ``/* */`` comments; pipelines
(``a | f b``) of fields (``.Values.x``, ``$.Values.x``, ``$var.x``, ``.``, ``$``), string, number,
``true``/``false``/``nil`` literals and parenthesised pipelines; ``$v := ...`` and ``$v = ...``;
``if``/``else if``/``else``, ``range`` over lists and maps (keys sorted, ``$k, $v :=`` forms),
``with``, ``define`` and ``end``.

Functions: include, toYaml, indent, nindent, quote, default, required, fail, printf (%s %d %v),
trunc, trimSuffix, replace, lower, join, list, dict, hasKey, empty, not, and, or, eq, ne, int,
toString, b64enc, sha256sum.

Go's and Helm's behaviour kept on purpose, because a real Helm shows it too: values' numbers are
float64 (so ``{{ .Values.x }}`` of 1048576 prints ``1.048576e+06``: quote numbers in values),
a missing map key is nil and prints as nothing, a field of nil is an error, ``eq`` refuses to
compare an int literal with a float from values, ``$`` in an included template is the data it
was given, and ``.Template.BasePath`` names the files so ``include`` can render one (for
checksum annotations). Values files merge as Helm merges them: maps deeply, anything else
replaced, and a ``null`` deletes the key. Stricter than Helm: printing a map or list (Helm
prints Go syntax), and ``printf "%d"`` of a float (Helm prints ``%!d(float64=…)``), are errors.

tests/unit/test_gotemplate.py pins these against what Helm 4.2.3's engine printed.
"""

from __future__ import annotations

import base64
import copy
import decimal
import hashlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<raw>`[^`]*`)
    | (?P<number>-?\d+(?:\.\d+)?)
    | (?P<declare>:=)
    | (?P<assign>=)
    | (?P<punct>[|(),])
    | (?P<variable>\$\w*(?:\.\w+)*)
    | (?P<field>(?:\.\w+)+|\.)
    | (?P<word>[A-Za-z_]\w*)
    )""",
    re.X,
)
KEYWORDS = {"if", "else", "end", "range", "with", "define"}
BLOCKS = {"if", "range", "with", "define"}


class TemplateError(Exception):
    """The template uses something outside the subset, or fails as Go's engine would."""


# ---------------------------------------------------------------------------------------------
# Parsing


@dataclass
class Pipeline:
    commands: list[list[tuple]]
    variables: list[str] = field(default_factory=list)
    declares: bool = True


@dataclass
class Block:
    kind: str
    pipeline: Pipeline | None
    body: list = field(default_factory=list)
    branches: list[tuple[Pipeline, list]] = field(default_factory=list)
    otherwise: list | None = None
    name: str = ""


def tokenize(text: str, where: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    text = text.strip()
    while position < len(text):
        match = TOKEN.match(text, position)
        if not match or match.end() == position:
            raise TemplateError(f"{where}: cannot read {text[position:]!r}")
        kind = match.lastgroup
        tokens.append((kind, match[kind]))
        position = match.end()
    return tokens


def parse_pipeline(tokens: list[tuple[str, str]], where: str) -> Pipeline:
    variables, declares = [], True
    for index, (kind, _) in enumerate(tokens):
        if kind in ("declare", "assign"):
            names = [value for k, value in tokens[:index] if k == "variable"]
            variables, declares, tokens = names, kind == "declare", tokens[index + 1:]
            break
    pipeline, rest = _parse_commands(tokens, where)
    if rest:
        raise TemplateError(f"{where}: unexpected {rest[0][1]!r}")
    pipeline.variables, pipeline.declares = variables, declares
    return pipeline


def _parse_commands(tokens, where):
    commands, command = [], []
    while tokens:
        kind, value = tokens[0]
        tokens = tokens[1:]
        if kind == "punct" and value == ")":
            return Pipeline(commands + [command]), [(kind, value), *tokens]
        if kind == "punct" and value == "|":
            commands.append(command)
            command = []
        elif kind == "punct" and value == "(":
            inner, tokens = _parse_commands(tokens, where)
            if not tokens or tokens[0][1] != ")":
                raise TemplateError(f"{where}: unclosed (")
            tokens = tokens[1:]
            command.append(("pipeline", inner))
        else:
            command.append(_operand(kind, value, where))
    if not command:
        raise TemplateError(f"{where}: empty command")
    return Pipeline(commands + [command]), []


def _operand(kind: str, value: str, where: str) -> tuple:
    if kind == "string":
        return ("value", _go_string(value))
    if kind == "raw":
        return ("value", value[1:-1])
    if kind == "number":
        return ("value", float(value) if "." in value else int(value))
    if kind == "variable":
        name, *path = value.split(".")
        return ("variable", name, path)
    if kind == "field":
        return ("field", [part for part in value.split(".") if part])
    if kind == "word":
        literal = {"true": True, "false": False, "nil": None}
        if value in literal:
            return ("value", literal[value])
        return ("function", value)
    raise TemplateError(f"{where}: unexpected {value!r}")


def _go_string(literal: str) -> str:
    return literal[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")


def parse(source: str, name: str) -> tuple[list, dict[str, list]]:
    """Parse one template file into a node list and the templates it defines."""
    defines: dict[str, list] = {}
    root: list = []
    stack: list[tuple[Block | None, list]] = [(None, root)]
    position, trim_next = 0, False
    for match in ACTION.finditer(source):
        text = source[position:match.start()]
        if trim_next:
            text = text.lstrip()
        if match[1]:
            text = text.rstrip()
        if text:
            stack[-1][1].append(text)
        position, trim_next = match.end(), bool(match[3])
        where = f"{name}:{source.count(chr(10), 0, match.start()) + 1}"
        body = match[2].strip()
        if body.startswith("/*"):
            if not body.endswith("*/"):
                raise TemplateError(f"{where}: unclosed comment")
            continue
        tokens = tokenize(body, where)
        head = tokens[0][1] if tokens[0][0] == "word" else None
        if head in BLOCKS:
            block = Block(head, None)
            if head == "define":
                block.name = _go_string(tokens[1][1])
            else:
                block.pipeline = parse_pipeline(tokens[1:], where)
                stack[-1][1].append(block)
            stack.append((block, block.body))
        elif head == "else":
            block, _ = stack[-1]
            if block is None or block.kind == "define":
                raise TemplateError(f"{where}: else outside if/range/with")
            if len(tokens) > 1 and tokens[1][1] == "if" and block.kind == "if":
                branch: list = []
                block.branches.append((parse_pipeline(tokens[2:], where), branch))
                stack[-1] = (block, branch)
            else:
                block.otherwise = []
                stack[-1] = (block, block.otherwise)
        elif head == "end":
            block, _ = stack.pop()
            if block is None:
                raise TemplateError(f"{where}: end without a block")
            if block.kind == "define":
                defines[block.name] = block.body
        elif head in KEYWORDS:
            raise TemplateError(f"{where}: {head} is outside the subset")
        else:
            stack[-1][1].append(("action", parse_pipeline(tokens, where), where))
    if len(stack) != 1:
        raise TemplateError(f"{name}: {stack[-1][0].kind} without end")
    text = source[position:]
    root.append(text.lstrip() if trim_next else text)
    return root, defines


# ---------------------------------------------------------------------------------------------
# Values as Helm sees them


def as_helm_values(value: Any) -> Any:
    """Return ``value`` with every number a float, as Helm reads YAML values (JSON numbers)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, Mapping):
        return {str(key): as_helm_values(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_helm_values(item) for item in value]
    raise TemplateError(f"values cannot hold {type(value).__name__}")


def merge_values(base: Mapping, override: Mapping) -> dict:
    """Merge values files as Helm does: maps deeply, the rest replaced, ``null`` deletes."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def go_format(value: Any) -> str:
    """Print a value as ``{{ value }}`` does in Helm."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, int | str):
        return str(value)
    raise TemplateError(f"printing a {type(value).__name__} gives Go syntax, not YAML: use toYaml")


def _go_float(number: float) -> str:
    # strconv.FormatFloat(f, 'g', -1, 64): shortest digits, an exponent outside [1e-4, 1e6).
    if number == 0:
        return "0"
    digits = decimal.Decimal(repr(number)).normalize()
    sign, figures, exponent = digits.as_tuple()
    point = len(figures) + exponent - 1
    if point < -4 or point >= 6:
        mantissa = "".join(map(str, figures))
        mantissa = mantissa[0] + ("." + mantissa[1:] if len(mantissa) > 1 else "")
        return f"{'-' if sign else ''}{mantissa}e{'-' if point < 0 else '+'}{abs(point):02d}"
    return format(digits, "f")


class _GoYamlDumper(yaml.SafeDumper):
    """Quote as Go's YAML encoder does: double quotes where a plain scalar would not do."""

    def choose_scalar_style(self):
        style = super().choose_scalar_style()
        return '"' if style == "'" else style


def _to_yaml(value: Any) -> str:
    if value is None:
        return "null"
    text = yaml.dump(_plain_numbers(value), Dumper=_GoYamlDumper, default_flow_style=False,
                     sort_keys=True, width=1 << 20)
    return text.removesuffix("\n").removesuffix("\n...")


def _plain_numbers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, Mapping):
        return {key: _plain_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_numbers(item) for item in value]
    return value


def truthy(value: Any) -> bool:
    return bool(value) if not isinstance(value, float) else value != 0


# ---------------------------------------------------------------------------------------------
# Rendering


@dataclass
class Chart:
    """A chart directory: its metadata, default values, and templates."""

    root: Path
    metadata: dict = field(init=False)
    defaults: dict = field(init=False)
    files: dict[str, list] = field(init=False, default_factory=dict)
    defines: dict[str, list] = field(init=False, default_factory=dict)
    sources: dict[str, str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.metadata = yaml.safe_load((self.root / "Chart.yaml").read_text(encoding="utf-8"))
        self.defaults = yaml.safe_load((self.root / "values.yaml").read_text(encoding="utf-8"))
        for path in sorted((self.root / "templates").iterdir()):
            name = f"{self.metadata['name']}/templates/{path.name}"
            source = path.read_text(encoding="utf-8")
            nodes, defines = parse(source, name)
            self.sources[name] = source
            self.defines.update(defines)
            self.defines[name] = nodes
            if not path.name.startswith("_"):
                self.files[name] = nodes

    def render(self, *overrides: Mapping, release: str = "council",
               namespace: str = "default") -> dict[str, str]:
        """Render every template file for the default values merged with ``overrides``."""
        values = self.defaults
        for override in overrides:
            values = merge_values(values, override)
        top = {
            "Values": as_helm_values(values),
            "Release": {"Name": release, "Namespace": namespace, "Service": "Helm",
                        "IsInstall": True, "IsUpgrade": False, "Revision": 1},
            "Chart": {"Name": self.metadata["name"], "Version": self.metadata["version"],
                      "AppVersion": self.metadata.get("appVersion", "")},
            "Template": {"BasePath": f"{self.metadata['name']}/templates"},
        }
        rendered = {}
        for name, nodes in self.files.items():
            top["Template"]["Name"] = name
            rendered[name] = Renderer(self.defines, top).render(nodes, top, [{"$": top}])
        return rendered


class Renderer:
    """Evaluate parsed templates against data, the way Go's text/template does."""

    def __init__(self, defines: dict[str, list], top: dict) -> None:
        self.defines = defines
        self.top = top
        self.functions: dict[str, Callable[..., Any]] = {
            "toYaml": _to_yaml,
            "indent": lambda width, text: _indent(int(width), text),
            "nindent": lambda width, text: "\n" + _indent(int(width), text),
            "quote": lambda *items: " ".join(_quote(item) for item in items if item is not None),
            "default": _default,
            "required": _required,
            "fail": _fail,
            "printf": _printf,
            "trunc": lambda length, text: text[: int(length)],
            "trimSuffix": lambda suffix, text: text.removesuffix(suffix),
            "replace": lambda old, new, text: text.replace(old, new),
            "lower": lambda text: text.lower(),
            "join": lambda separator, items: separator.join(go_format(i) for i in items or ()),
            "list": lambda *items: list(items),
            "dict": _dict,
            "hasKey": lambda mapping, key: key in mapping,
            "empty": lambda value: not truthy(value),
            "not": lambda value: not truthy(value),
            "eq": lambda first, *others: any(_equal(first, other) for other in others),
            "ne": lambda first, other: not _equal(first, other),
            "int": lambda value: int(float(value or 0)),
            "toString": go_format,
            "b64enc": lambda text: base64.b64encode(go_format(text).encode()).decode(),
            "sha256sum": lambda text: hashlib.sha256(text.encode()).hexdigest(),
        }

    def render(self, nodes: list, dot: Any, scopes: list[dict]) -> str:
        return "".join(self._render(nodes, dot, scopes))

    def _render(self, nodes: list, dot: Any, scopes: list[dict]) -> Iterator[str]:
        for node in nodes:
            if isinstance(node, str):
                yield node
            elif isinstance(node, Block):
                yield from self._block(node, dot, scopes)
            else:
                _, pipeline, where = node
                value = self._pipeline(pipeline, dot, scopes, where)
                if not pipeline.variables:
                    yield go_format(value)

    def _block(self, block: Block, dot: Any, scopes: list[dict]) -> Iterator[str]:
        where = f"{block.kind} block"
        if block.kind == "if":
            for pipeline, body in [(block.pipeline, block.body), *block.branches]:
                inner = [*scopes, {}]
                if truthy(self._pipeline(pipeline, dot, inner, where)):
                    yield from self._render(body, dot, inner)
                    return
            if block.otherwise is not None:
                yield from self._render(block.otherwise, dot, [*scopes, {}])
        elif block.kind == "with":
            inner = [*scopes, {}]
            value = self._pipeline(block.pipeline, dot, inner, where)
            if truthy(value):
                yield from self._render(block.body, value, inner)
            elif block.otherwise is not None:
                yield from self._render(block.otherwise, dot, [*scopes, {}])
        else:
            yield from self._range(block, dot, scopes)

    def _range(self, block: Block, dot: Any, scopes: list[dict]) -> Iterator[str]:
        pipeline = Pipeline(block.pipeline.commands)
        collection = self._pipeline(pipeline, dot, scopes, "range")
        if isinstance(collection, Mapping):
            pairs = [(key, collection[key]) for key in sorted(collection)]
        elif isinstance(collection, list):
            pairs = list(enumerate(collection))
        elif collection is None:
            pairs = []
        else:
            raise TemplateError(f"range can't iterate over {collection!r}")
        names = block.pipeline.variables
        for key, item in pairs:
            scope = dict(zip(names, [key, item] if len(names) == 2 else [item], strict=False))
            yield from self._render(block.body, item, [*scopes, scope])
        if not pairs and block.otherwise is not None:
            yield from self._render(block.otherwise, dot, [*scopes, {}])

    def _pipeline(self, pipeline: Pipeline, dot: Any, scopes: list[dict], where: str) -> Any:
        value, piped = None, False
        for command in pipeline.commands:
            value = self._command(command, dot, scopes, where, (value,) if piped else ())
            piped = True
        if pipeline.variables:
            name = pipeline.variables[-1]
            if pipeline.declares:
                scopes[-1][name] = value
            else:
                next(scope for scope in reversed(scopes) if name in scope)[name] = value
        return value

    def _command(self, command: list[tuple], dot, scopes, where, piped: tuple) -> Any:
        head, *arguments = command
        if head[0] != "function":
            if arguments:
                raise TemplateError(f"{where}: can't give arguments to a non-function")
            if piped:
                raise TemplateError(f"{where}: can't pipe into a non-function")
            return self._operand(head, dot, scopes, where)
        name = head[1]
        if name in ("and", "or"):
            return self._logic(name, arguments, dot, scopes, where, piped)
        values = [self._operand(argument, dot, scopes, where) for argument in arguments]
        values += piped
        if name == "include":
            template, data = values
            if template not in self.defines:
                raise TemplateError(f"{where}: no template {template!r}")
            # As in Go, ``$`` inside the invoked template is the data it was given.
            return self.render(self.defines[template], data, [{"$": data}])
        if name not in self.functions:
            raise TemplateError(f"{where}: function {name!r} is outside the subset")
        try:
            return self.functions[name](*values)
        except TemplateError as error:
            raise TemplateError(f"{where}: {error}") from error
        except (TypeError, ValueError, AttributeError) as error:
            raise TemplateError(f"{where}: {name}: {error}") from error

    def _logic(self, name, arguments, dot, scopes, where, piped) -> Any:
        value = None
        for argument in [*arguments, *(("value", item) for item in piped)]:
            value = self._operand(argument, dot, scopes, where)
            if truthy(value) == (name == "or"):
                return value
        return value

    def _operand(self, operand: tuple, dot: Any, scopes: list[dict], where: str) -> Any:
        kind = operand[0]
        if kind == "value":
            return operand[1]
        if kind == "pipeline":
            return self._pipeline(operand[1], dot, scopes, where)
        if kind == "field":
            return _walk(dot, operand[1], where)
        if kind == "variable":
            name, path = operand[1], operand[2]
            for scope in reversed(scopes):
                if name in scope:
                    return _walk(scope[name], path, where)
            raise TemplateError(f"{where}: undefined variable {name}")
        raise TemplateError(f"{where}: {operand[1]!r} is not a value")


def _walk(value: Any, path: list[str], where: str) -> Any:
    for index, name in enumerate(path):
        if value is None:
            trail = ".".join(path[:index])
            raise TemplateError(f"{where}: nil pointer evaluating .{trail}.{name}")
        if not isinstance(value, Mapping):
            raise TemplateError(f"{where}: can't evaluate field {name} in {type(value).__name__}")
        value = value.get(name)
    return value


def _indent(width: int, text: str) -> str:
    pad = " " * width
    return pad + go_format(text).replace("\n", "\n" + pad)


def _quote(item: Any) -> str:
    text = go_format(item)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _default(fallback: Any, *given: Any) -> Any:
    return given[0] if given and truthy(given[0]) else fallback


def _required(message: str, value: Any) -> Any:
    if value is None or value == "":
        raise TemplateError(message)
    return value


def _fail(message: str) -> None:
    raise TemplateError(message)


def _printf(template: str, *arguments: Any) -> str:
    verbs = re.findall(r"%([vsd%])", template)
    given = iter(arguments)
    texts = []
    for verb in (verb for verb in verbs if verb != "%"):
        argument = next(given)
        if verb == "d" and not isinstance(argument, int):
            # Go prints %!d(float64=2) here: values' numbers are floats, convert them with int.
            raise TemplateError(f"printf %d of {argument!r}: use int first")
        if verb == "s" and not isinstance(argument, str):
            raise TemplateError(f"printf %s of {argument!r}: use %v")
        texts.append(go_format(argument))
    return re.sub(r"%[vsd]", "%s", template) % tuple(texts)


def _dict(*pairs: Any) -> dict:
    if len(pairs) % 2:
        raise TemplateError("dict needs key/value pairs")
    return {str(pairs[i]): pairs[i + 1] for i in range(0, len(pairs), 2)}


def _equal(first: Any, second: Any) -> bool:
    kinds = {type(first), type(second)}
    if kinds == {int, float}:
        raise TemplateError("incompatible types for comparison")
    return first == second
