"""Hypothesis strategies built from an OpenAPI schema, and a checker for the answers.

Requests are mostly schema-valid with one field swapped for arbitrary JSON now and then, so the
fuzz reaches both the handlers and the validation layer. Only the JSON-schema keywords FastAPI
emits are handled: $ref, anyOf, enum, type, properties/required, items, min/max bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

Schema = dict[str, Any]
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
ANY_JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
HOSTILE_TEXT = st.sampled_from(["", " ", "\x00", "\ud800", "💥" * 50, "a" * 5000, "-1", "1e309"])


@dataclass(frozen=True)
class Operation:
    """One route and method from the schema."""

    method: str
    template: str
    spec: Schema


@dataclass(frozen=True)
class Request:
    """A concrete request drawn for an operation (`path` includes the encoded query)."""

    method: str
    path: str
    body: Any
    has_body: bool


def percent_encoded(text: str) -> str:
    """URL-escape every reserved byte, lone surrogates included (sent as their raw bytes)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def resolve(schema: Schema, components: Schema) -> Schema:
    """Follow `$ref`s to the schema they name."""
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def valid_values(schema: Schema, components: Schema, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values that satisfy `schema` (within the keywords handled here)."""
    schema = resolve(schema, components)
    if "anyOf" in schema:
        return st.one_of([valid_values(option, components, depth) for option in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        low = schema.get("minLength", 0)
        return st.text(min_size=low, max_size=max(low, schema.get("maxLength", 40)))
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        values = st.integers(min_value=low, max_value=high)
        step = schema.get("multipleOf")
        return (
            values.map(lambda v: v - v % step).filter(lambda v: low is None or v >= low)
            if step
            else values
        )
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        items = valid_values(schema.get("items", {}), components, depth + 1)
        low = schema.get("minItems", 0)
        return st.lists(items, min_size=low, max_size=max(low, 4))
    if kind == "object" and "properties" in schema and depth < 4:
        required = set(schema.get("required", []))
        fields = {
            name: valid_values(sub, components, depth + 1)
            for name, sub in schema["properties"].items()
        }
        return st.fixed_dictionaries(
            {name: fields[name] for name in required},
            optional={name: fields[name] for name in fields if name not in required},
        )
    if kind == "object":
        return st.dictionaries(st.text(max_size=8), SCALARS, max_size=3)
    return ANY_JSON


def corrupted(value: Any) -> st.SearchStrategy[Any]:
    """`value` with one top-level entry (or the whole value) replaced by arbitrary JSON."""
    if isinstance(value, dict) and value:
        return st.tuples(st.sampled_from(sorted(value)), ANY_JSON).map(
            lambda pair: {**value, pair[0]: pair[1]}
        )
    return ANY_JSON


def parameter_values(
    operation: Operation, components: Schema, known_ids: list[str]
) -> st.SearchStrategy[dict[str, Any]]:
    """Path and query parameters: schema-valid, known ids and codes, or hostile strings."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for parameter in operation.spec.get("parameters", []):
        name = parameter["name"]
        valid = valid_values(parameter["schema"], components)
        if name == "doc_id":
            valid = st.sampled_from(known_ids) | valid
        if name == "code":
            valid = st.from_regex(r"\A[0-9a-f]{4}\Z") | valid
        if name == "q":
            valid = st.sampled_from(["orbit shuttle", "goalie puck", "pixel"]) | valid
        fields[name] = valid | HOSTILE_TEXT | st.integers()
    return st.fixed_dictionaries(fields)


@st.composite
def requests(
    draw: st.DrawFn, operation: Operation, components: Schema, known_ids: list[str]
) -> Request:
    """One request for `operation`."""
    values = draw(parameter_values(operation, components, known_ids))
    locations = {p["name"]: p["in"] for p in operation.spec.get("parameters", [])}
    path = operation.template
    query: list[str] = []
    for name, value in values.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if locations[name] == "path":
            path = path.replace("{" + name + "}", percent_encoded(text) or "%20")
        elif draw(st.integers(0, 4)):
            query.append(f"{name}={percent_encoded(text)}")
    if query:
        path += "?" + "&".join(query)
    content = operation.spec.get("requestBody", {}).get("content", {}).get("application/json")
    body = None
    if content is not None:
        body = draw(valid_values(content["schema"], components))
        if draw(st.integers(0, 3)) == 0:
            body = draw(corrupted(body))
    return Request(operation.method, path, body, content is not None)


def problems(value: Any, schema: Schema, components: Schema, where: str = "$") -> list[str]:
    """Where `value` departs from `schema` (empty when it conforms)."""
    schema = resolve(schema, components)
    if "anyOf" in schema:
        options = [problems(value, option, components, where) for option in schema["anyOf"]]
        return [] if any(not found for found in options) else [f"{where}: matches no anyOf"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} not in {schema['enum']}"]
    kind = schema.get("type")
    checks = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
    }
    if kind in checks and not checks[kind](value):
        return [f"{where}: expected {kind}, got {type(value).__name__}"]
    found: list[str] = []
    if kind == "array":
        for index, item in enumerate(value):
            found += problems(item, schema.get("items", {}), components, f"{where}[{index}]")
    if kind == "object":
        for name in schema.get("required", []):
            if name not in value:
                found.append(f"{where}: missing {name!r}")
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                found += problems(value[name], sub, components, f"{where}.{name}")
    return found


def response_schema(operation: Operation, status: int) -> Schema | None:
    """The documented JSON schema for `status` (exact code first, then the `4XX`/`5XX` range)."""
    responses = operation.spec["responses"]
    for key in (str(status), f"{status // 100}XX"):
        content = responses.get(key, {}).get("content", {}).get("application/json")
        if content is not None:
            return content.get("schema", {})
    return None
