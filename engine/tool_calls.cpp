#include "engine/tool_calls.h"

#include <algorithm>

#include "engine/json_schema_pattern.h"

namespace tiergate::engine {
namespace {

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// The longest suffix of `text` that is a proper prefix of `tag` (text that may become the tag).
std::size_t partial_tag(std::string_view text, std::string_view tag) {
  for (std::size_t n = std::min(text.size(), tag.size() - 1); n > 0; --n) {
    if (text.substr(text.size() - n) == tag.substr(0, n)) return n;
  }
  return 0;
}

enum class Match { kMore, kYes, kNo };

// `"key" ws : ws` at text[at...]; advances `at` on a match.
Match expect_key(std::string_view text, std::size_t& at, std::string_view key) {
  auto skip = [&] {
    while (at < text.size() && is_space(text[at])) ++at;
  };
  const std::string want = "\"" + std::string(key) + "\"";
  skip();
  for (char c : want) {
    if (at == text.size()) return Match::kMore;
    if (text[at++] != c) return Match::kNo;
  }
  skip();
  if (at == text.size()) return Match::kMore;
  if (text[at++] != ':') return Match::kNo;
  skip();
  return Match::kYes;
}

}  // namespace

ToolCallFormat hermes_tool_call_format() { return {"<tool_call>\n", "\n</tool_call>", "\n", "arguments"}; }

std::optional<GrammarSpec> tool_call_grammar(const ToolCallFormat& format, const std::vector<ToolDefinition>& tools,
                                             const ToolChoice& choice, bool parallel) {
  if (choice.mode == ToolChoice::Mode::kNone || choice.mode == ToolChoice::Mode::kAuto) return std::nullopt;
  std::string source = "{\"open\": " + json_quote(format.open) + ", \"close\": " + json_quote(format.close) +
                       ", \"separator\": " + json_quote(format.separator) + ", \"key\": " + json_quote(format.arguments_key) +
                       ", \"parallel\": " + (parallel ? "true" : "false") + ", \"tools\": [";
  bool first = true;
  for (const ToolDefinition& t : tools) {
    if (choice.mode == ToolChoice::Mode::kNamed && t.name != choice.name) continue;
    source += (first ? "" : ", ") + std::string("{\"name\": ") + json_quote(t.name) +
              ", \"parameters\": " + (t.parameters.empty() ? std::string("null") : t.parameters) + "}";
    first = false;
  }
  source += "]}";
  return GrammarSpec{GrammarSpec::Kind::kToolCalls, std::move(source), false, "tools"};
}

// ---- streaming parser ----

std::vector<ToolCallStream::Event> ToolCallStream::push(std::string_view text) {
  std::vector<Event> out;
  pending_ += text;
  step(out, false);
  return out;
}

std::vector<ToolCallStream::Event> ToolCallStream::finish() {
  std::vector<Event> out;
  step(out, true);
  return out;
}

void ToolCallStream::give_back(std::vector<Event>& out) {
  // The broken call's text, and everything after it, is content from here on.
  if (state_ != State::kHeader) out.push_back({Event::Kind::kCallBroken, index_, ""});
  out.push_back({Event::Kind::kContent, 0, call_text_ + pending_});
  call_text_.clear();
  pending_.clear();
  state_ = State::kBroken;
}

void ToolCallStream::step(std::vector<Event>& out, bool at_end) {
  const std::string_view open = trim(format_.open), close = trim(format_.close);
  for (;;) {
    switch (state_) {
      case State::kBroken:
        if (!pending_.empty()) out.push_back({Event::Kind::kContent, 0, std::move(pending_)});
        pending_.clear();
        return;
      case State::kText: {
        const std::size_t hit = pending_.find(open);
        std::size_t emit = hit != std::string::npos ? hit : pending_.size() - (at_end ? 0 : partial_tag(pending_, open));
        // Whitespace before a call, between calls or at the end is not content.
        std::size_t keep = emit;
        while (keep > 0 && is_space(pending_[keep - 1])) --keep;
        const bool drop_space = hit != std::string::npos || (at_end && complete_ > 0);
        if (keep > 0) out.push_back({Event::Kind::kContent, 0, pending_.substr(0, keep)});
        if (hit == std::string::npos) {
          if (at_end && !drop_space && emit > keep) out.push_back({Event::Kind::kContent, 0, pending_.substr(keep, emit - keep)});
          pending_.erase(0, at_end ? pending_.size() : keep);
          return;
        }
        call_text_ = pending_.substr(keep, hit + open.size() - keep);
        pending_.erase(0, hit + open.size());
        state_ = State::kHeader;
        streamed_ = 0;
        break;
      }
      case State::kHeader: {
        // ws { "name": "NAME", "arguments":
        std::size_t at = 0;
        while (at < pending_.size() && is_space(pending_[at])) ++at;
        Match m = at == pending_.size() ? Match::kMore : pending_[at] == '{' ? Match::kYes : Match::kNo;
        std::string name;
        if (m == Match::kYes) {
          ++at;
          m = expect_key(pending_, at, "name");
        }
        if (m == Match::kYes) {
          if (at == pending_.size()) {
            m = Match::kMore;
          } else if (pending_[at] != '"') {
            m = Match::kNo;
          } else {
            const std::size_t end = pending_.find('"', at + 1);
            if (end == std::string::npos) {
              m = Match::kMore;
            } else {
              name = pending_.substr(at + 1, end - at - 1);
              if (name.empty() || name.find('\\') != std::string::npos) m = Match::kNo;
              at = end + 1;
            }
          }
        }
        if (m == Match::kYes) {
          while (at < pending_.size() && is_space(pending_[at])) ++at;
          m = at == pending_.size() ? Match::kMore : pending_[at++] == ',' ? Match::kYes : Match::kNo;
        }
        if (m == Match::kYes) m = expect_key(pending_, at, format_.arguments_key);
        if (m == Match::kMore && !at_end) return;
        if (m != Match::kYes) {
          give_back(out);
          break;
        }
        call_text_ += pending_.substr(0, at);
        pending_.erase(0, at);
        out.push_back({Event::Kind::kCallStart, ++index_, name});
        state_ = State::kArguments;
        depth_ = 0;
        in_string_ = escaped_ = false;
        break;
      }
      case State::kArguments: {
        std::size_t at = 0;
        bool done = false, bad = false;
        for (; at < pending_.size() && !done; ++at) {
          const char c = pending_[at];
          if (depth_ == 0 && is_space(c)) continue;  // before the object opens
          if (depth_ == 0 && c != '{') {
            bad = true;
            break;
          }
          if (in_string_) {
            if (escaped_) {
              escaped_ = false;
            } else if (c == '\\') {
              escaped_ = true;
            } else if (c == '"') {
              in_string_ = false;
            }
          } else if (c == '"') {
            in_string_ = true;
          } else if (c == '{' || c == '[') {
            ++depth_;
          } else if (c == '}' || c == ']') {
            done = --depth_ == 0;
          }
        }
        if (bad) {
          give_back(out);
          break;
        }
        std::string fragment = pending_.substr(0, at);
        if (streamed_ == 0) {  // leading whitespace is not part of the arguments
          const std::size_t first = fragment.find_first_not_of(" \n\t\r");
          fragment.erase(0, first == std::string::npos ? fragment.size() : first);
        }
        call_text_ += pending_.substr(0, at);
        pending_.erase(0, at);
        if (!fragment.empty()) {
          streamed_ += fragment.size();
          out.push_back({Event::Kind::kArguments, index_, std::move(fragment)});
        }
        if (done) {
          state_ = State::kTail;
          break;
        }
        if (at_end) {
          give_back(out);
          break;
        }
        return;
      }
      case State::kTail: {
        // ws } ws CLOSE
        std::size_t at = 0;
        while (at < pending_.size() && is_space(pending_[at])) ++at;
        Match m = at == pending_.size() ? Match::kMore : pending_[at++] == '}' ? Match::kYes : Match::kNo;
        if (m == Match::kYes) {
          while (at < pending_.size() && is_space(pending_[at])) ++at;
          const std::string_view rest = std::string_view(pending_).substr(at);
          if (rest.size() >= close.size()) {
            m = rest.substr(0, close.size()) == close ? Match::kYes : Match::kNo;
            at += close.size();
          } else {
            m = close.substr(0, rest.size()) == rest ? Match::kMore : Match::kNo;
          }
        }
        if (m == Match::kMore && !at_end) return;
        if (m != Match::kYes) {
          give_back(out);
          break;
        }
        pending_.erase(0, at);
        call_text_.clear();
        ++complete_;
        state_ = State::kText;
        break;
      }
    }
  }
}

ParsedToolCalls parse_tool_calls(const ToolCallFormat& format, std::string_view text, const std::string& id_prefix) {
  ToolCallStream stream(format);
  std::vector<ToolCallStream::Event> events = stream.push(text);
  for (auto& e : stream.finish()) events.push_back(std::move(e));
  ParsedToolCalls parsed;
  for (auto& e : events) {
    switch (e.kind) {
      case ToolCallStream::Event::Kind::kContent: parsed.content += e.text; break;
      case ToolCallStream::Event::Kind::kCallStart:
        parsed.calls.push_back({id_prefix + std::to_string(e.index), e.text, ""});
        break;
      case ToolCallStream::Event::Kind::kCallBroken:  // it is content (the next event) after all
        parsed.calls.pop_back();
        break;
      case ToolCallStream::Event::Kind::kArguments: parsed.calls.back().arguments += e.text; break;
    }
  }
  return parsed;
}

}  // namespace tiergate::engine
