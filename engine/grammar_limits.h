// The budgets every client-supplied output constraint (guided_regex, guided_json, guided_choice,
// response_format, the tool calls tool_choice requires) is compiled and run under. A constraint is
// a program a tenant hands the server; each stage that could grow with it has a limit checked while
// it grows, not after: the source's size, its nesting, the pattern nodes made, the NFA's and the
// DFA's states, the bytes a grammar holds, and the compile's wall time. Past a compile-time limit
// the request is refused (GrammarError, which the gateway answers with a 400 naming the field and
// the limit); past a run-time one (DFA states, bytes) the generation under it ends.
//
// Why these numbers: the largest real schemas we know (OpenAI's function-calling examples, vLLM's
// and XGrammar's test suites, Kubernetes manifests) compile to well under a tenth of each; each
// limit bounds memory in the tens of MiB per grammar and the compile in about a second on a
// 2-core machine, so a hostile spec costs its sender a 400, not the server its memory or time.
#pragma once

#include <chrono>
#include <cstddef>

namespace tiergate::engine {

struct GrammarLimits {
  std::size_t max_source_bytes = 64 * 1024;   // the spec's text (schema, expression, choices)
  int max_nesting = 64;                       // regex groups, schema levels (objects, arrays, anyOf, $ref)
  std::size_t max_pattern_nodes = 100'000;    // byte-pattern nodes made while compiling (shared ones once)
  std::size_t max_nfa_states = 200'000;       // the Thompson NFA, every use of a shared node expanded
  std::size_t max_dfa_states = 50'000;        // the lazily built DFA, per grammar
  std::size_t max_grammar_bytes = 32u << 20;  // NFA, DFA tables and token masks one grammar may hold
  std::chrono::milliseconds max_compile_time{1000};  // parse, pattern, NFA and the first state's mask
};

// Every compiled grammar together (GrammarCache drops the least recently used past it).
inline constexpr std::size_t kMaxGrammarCacheBytes = 256u << 20;

}  // namespace tiergate::engine
