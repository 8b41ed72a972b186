// JSON as a grammar Pattern: any JSON object (response_format json_object), a JSON schema's
// instances (json_schema, guided_json, tool arguments), one of a list of strings (guided_choice)
// and the tool calls tool_choice requires. Every string the pattern admits parses as JSON and
// validates against the schema.
//
// Supported schema subset (anything else is an error naming the keyword and its JSON path):
//   type (one or a list), enum, const, anyOf, allOf of one schema, $ref into $defs/definitions
//   (not recursive), nullable; objects: properties (generated in the schema's order; optional ones
//   may be left out), required, additionalProperties (false, true, or a schema when there are no
//   properties: a map); arrays: items, prefixItems, minItems, maxItems; strings: minLength,
//   maxLength, pattern (engine/regex_pattern.h) and format date, time, date-time, uuid, ipv4,
//   email; integers: minimum, maximum, exclusiveMinimum, exclusiveMaximum (up to 16 digits);
//   numbers: no bounds (integers fit in 18 digits, exponents in 2). Annotations (title, description, default, examples, $schema, $id,
//   $comment, deprecated, readOnly, writeOnly, discriminator) are ignored. An object generates only
//   the properties it lists. Values of no schema (`{}`, `true`, a free array's items, an object
//   with no properties) are any JSON nested up to 3 levels; json_object's up to kMaxJsonDepth.
// Whitespace between tokens: nothing, one space, or a newline and up to 16 spaces or tabs of
// indentation (so that a model's habit of pretty printing fits, but cannot loop forever).
// Budgets (engine/grammar_limits.h): the text's size, schema levels (objects, arrays, anyOf, allOf,
// $ref) nested past `max_nesting`, and pattern nodes past `max_pattern_nodes` are errors naming the
// limit, found while compiling. A $ref's target compiles once per nesting depth and is shared by
// every use, so a chain of definitions that each refer twice to the next stays linear here (its
// NFA, which expands each use, meets the NFA limit instead). Pure functions.
#pragma once

#include <string>
#include <string_view>
#include <variant>

#include "engine/grammar_limits.h"
#include "engine/grammar_pattern.h"

namespace tiergate::engine {

inline constexpr int kMaxJsonDepth = 6;  // nesting of objects and arrays a schema leaves free

struct SchemaError {
  std::string message;
};

// Any JSON object (OpenAI's json_object mode: the top level is an object).
PatternRef json_object_pattern();
// `schema`: JSON text. strict: OpenAI's strict mode, which also requires every object to set
// additionalProperties false and list every property in required.
std::variant<PatternRef, SchemaError> json_schema_pattern(std::string_view schema, bool strict,
                                                          const GrammarLimits& limits = {});
// `choices`: a JSON list of strings.
std::variant<PatternRef, SchemaError> choice_pattern(std::string_view choices, const GrammarLimits& limits = {});
// `source`: engine/tool_calls.cpp's description of the calls allowed.
std::variant<PatternRef, SchemaError> tool_calls_pattern(std::string_view source, const GrammarLimits& limits = {});

// `s` as a JSON string literal (quotes, escapes), as the patterns write property and tool names.
std::string json_quote(std::string_view s);

}  // namespace tiergate::engine
