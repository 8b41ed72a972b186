// Regular expressions (the common subset of Python's re, ECMAScript and RE2 that describes a
// regular language) as a grammar Pattern: literals and escapes (\n \t \xHH \uHHHH ...), `.`,
// classes ([a-z], [^...], \d \w \s and their negations), groups ((...), (?:...), named), `|`, and
// the quantifiers * + ? {n} {n,} {n,m} (lazy forms too: the language is the same). `^` at the start
// and `$` at the end are accepted (the whole output always matches); anything that is not regular
// (backreferences, lookaround, \b) or that this subset lacks (inline flags) is an error naming it
// and its position. \d \w \s are ASCII. `.` is any character but a newline. As in Python's re, a
// quantifier cannot follow a quantifier ("multiple repeat"). Groups nest at most
// `limits.max_nesting` deep and the pattern holds at most `limits.max_pattern_nodes` nodes: the
// parser stops at either, so its recursion and memory are bounded by the limits, not the input.
// Pure functions.
#pragma once

#include <string>
#include <string_view>
#include <variant>

#include "engine/grammar_limits.h"
#include "engine/grammar_pattern.h"

namespace tiergate::engine {

struct RegexError {
  std::string message;
};

std::variant<PatternRef, RegexError> regex_pattern(std::string_view regex, const GrammarLimits& limits = {});

// The pattern as the content of a JSON string: `"`, `\` and the control characters a match may
// hold are written as JSON escapes (\", \\, \n, \t, \r); other control characters are left out.
PatternRef json_string_content(const PatternRef& raw);

}  // namespace tiergate::engine
