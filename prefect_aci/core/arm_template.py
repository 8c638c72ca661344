"""ARM templates read as data: which template strings are expressions, an expression parsed into a
tree, the function calls a template makes, and the errors Azure's JSON schemas report about it.
Reading only, with one exception: `arm_guid`, ARM's guid(), which `arm` (to find the role the
template made) and local Resource Manager (to evaluate it) must compute alike. What the other
functions return is for whoever evaluates (prefect_aci.local_aci.expressions); `arm` validates
templates with this module and the tests check the template's expressions with it.

A template string is an expression when it is in brackets ("[...]"), unless it starts with "[["
(the escape for a literal leading bracket). Inside: string literals in single quotes ('' escapes
a quote), integers, function calls, `.property` and `[index]` access. No maintained Python library
reads them (Azure's own reader is .NET), so this is a small recursive-descent parser over ARM's
expression grammar.
"""

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import jsonschema

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_PROPERTY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?\d+")


# ARM's guid(a, b, ...): the name-based (version 5, SHA-1) UUID of the UTF-8 text "a-b-..." in this
# namespace, as Azure Resource Manager and Bicep compute it (Bicep's GuidUtility, RFC 4122).
ARM_GUID_NAMESPACE = uuid.UUID("11fb06fb-712d-4ddd-98c7-e71bbd588830")


def arm_guid(*parts: str) -> str:
    """What a template's guid(...) makes of the same strings."""
    return str(uuid.uuid5(ARM_GUID_NAMESPACE, "-".join(parts)))


class ExpressionError(ValueError):
    """The text is not a valid template language expression; the message says where."""


@dataclass(frozen=True)
class Literal:
    value: str | int

    def __str__(self) -> str:
        if isinstance(self.value, int):
            return str(self.value)
        return "'" + self.value.replace("'", "''") + "'"


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple["Node", ...]

    def __str__(self) -> str:
        return f"{self.name}({', '.join(map(str, self.args))})"

    def literal(self, index: int) -> str | int | None:
        """The argument at ``index`` when it is a literal; None when it is an expression itself
        or missing (ARM has no null literal: null() is a call)."""
        arg = self.args[index] if index < len(self.args) else None
        return arg.value if isinstance(arg, Literal) else None


@dataclass(frozen=True)
class Property:
    target: "Node"
    name: str

    def __str__(self) -> str:
        return f"{self.target}.{self.name}"


@dataclass(frozen=True)
class Index:
    target: "Node"
    index: "Node"

    def __str__(self) -> str:
        return f"{self.target}[{self.index}]"


# Frozen dataclasses: two trees are equal when they are the same expression, whitespace aside.
Node = Literal | Call | Property | Index


def is_expression(value: object) -> bool:
    return (
        isinstance(value, str)
        and value.startswith("[")
        and value.endswith("]")
        and not value.startswith("[[")
    )


def literal_string(value: str) -> str:
    """What a template string that is not an expression stands for ('[[' escapes a bracket)."""
    return value[1:] if value.startswith("[[") else value


def parse(value: str) -> Node:
    """The tree of a template string that is an expression (brackets included)."""
    if not is_expression(value):
        raise ExpressionError(f"'{value}' is not a template language expression.")
    return _Parser(value[1:-1]).whole()


def walk(node: Node) -> Iterator[Node]:
    """Every node of a tree, each before the nodes inside it: the order of the text."""
    yield node
    if isinstance(node, Call):
        for arg in node.args:
            yield from walk(arg)
    elif isinstance(node, Property):
        yield from walk(node.target)
    elif isinstance(node, Index):
        yield from walk(node.target)
        yield from walk(node.index)


def calls(node: Node, name: str | None = None) -> Iterator[Call]:
    """The function calls of a tree in the order of the text; only those of ``name`` if given."""
    for found in walk(node):
        if isinstance(found, Call) and name in (None, found.name):
            yield found


def template_calls(fragment: object, name: str | None = None) -> Iterator[Call]:
    """The function calls of every expression in a template or a part of it, object keys
    included (an identity's resource id is a key), in document order; only those of ``name`` if
    given. An expression that does not parse raises ExpressionError: it is a defect too."""
    if isinstance(fragment, str):
        if is_expression(fragment):
            yield from calls(parse(fragment), name)
    elif isinstance(fragment, dict):
        for key, value in fragment.items():
            yield from template_calls(key, name)
            yield from template_calls(value, name)
    elif isinstance(fragment, list):
        for item in fragment:
            yield from template_calls(item, name)


def schema_error_leaves(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """The errors at the bottom of an error's context tree: a oneOf/anyOf error hides there what
    is actually wrong, under the alternatives that did not match either."""
    if not error.context:
        return [error]
    return [leaf for child in error.context for leaf in schema_error_leaves(child)]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def fail(self, what: str) -> ExpressionError:
        return ExpressionError(
            f"The template language expression '{self.text}' is not valid: {what} "
            f"at position {self.at}."
        )

    def peek(self) -> str:
        while self.at < len(self.text) and self.text[self.at].isspace():
            self.at += 1
        return self.text[self.at] if self.at < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.fail(f"expected '{char}'")
        self.at += 1

    def match(self, pattern: re.Pattern[str], what: str) -> str:
        found = pattern.match(self.text, self.at)
        if not found:
            raise self.fail(f"expected {what}")
        self.at = found.end()
        return found.group()

    def whole(self) -> Node:
        node = self.value()
        if self.peek():
            raise self.fail("unexpected text")
        return node

    def value(self) -> Node:
        char = self.peek()
        if char == "'":
            node: Node = Literal(self.string())
        elif char.isdigit() or char == "-":
            node = Literal(int(self.match(_NUMBER, "a number")))
        elif char.isalpha():
            node = self.call()
        else:
            raise self.fail("expected a value")
        return self.accessors(node)

    def accessors(self, node: Node) -> Node:
        """`.property` and `[index]` after a value, as many as follow."""
        while self.peek() in (".", "["):
            if self.peek() == ".":
                self.at += 1
                node = Property(node, self.match(_PROPERTY, "a property name"))
            else:
                self.at += 1
                index = self.value()
                self.expect("]")
                node = Index(node, index)
        return node

    def string(self) -> str:
        self.at += 1
        out = []
        while self.at < len(self.text):
            char = self.text[self.at]
            if char == "'":
                if self.text[self.at + 1 : self.at + 2] == "'":
                    out.append("'")
                    self.at += 2
                    continue
                self.at += 1
                return "".join(out)
            out.append(char)
            self.at += 1
        raise self.fail("unterminated string")

    def call(self) -> Call:
        name = self.match(_NAME, "a function name")
        self.expect("(")
        args = []
        if self.peek() != ")":
            args.append(self.value())
            while self.peek() == ",":
                self.at += 1
                args.append(self.value())
        self.expect(")")
        return Call(name, tuple(args))
