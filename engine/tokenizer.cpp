#include "engine/tokenizer.h"

#include <algorithm>
#include <queue>
#include <stdexcept>

#include "engine/gguf_file.h"
#include "engine/unicode.h"
#include "kernels/check.h"

namespace tiergate::engine {
namespace {

struct Codepoint {
  std::uint32_t cp;
  std::size_t offset;  // in the original bytes
  std::size_t length;
  std::uint8_t flags;
};

std::vector<Codepoint> codepoints_of(std::string_view text) {
  std::vector<Codepoint> out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    const DecodedCodepoint d = decode_utf8(text, i);
    out.push_back({d.codepoint, i, d.length, codepoint_flags(d.codepoint)});
    i += d.length;
  }
  return out;
}

// The GPT-2 rule on cps[begin, end): calls emit(first, last) for each word (cp indices, last
// exclusive). Look-ahead never crosses `end`, as in llama.cpp's splitter.
template <typename Emit>
void split_gpt2(const std::vector<Codepoint>& cps, std::size_t begin, std::size_t end, Emit emit) {
  auto flags_at = [&](std::size_t i) -> std::uint8_t { return i < end ? cps[i].flags : 0; };
  auto exists = [&](std::size_t i) { return i < end; };
  auto cp_at = [&](std::size_t i) -> std::uint32_t { return i < end ? cps[i].cp : 0; };
  constexpr std::uint8_t kAny = kLetter | kNumber | kWhitespace;
  std::size_t pos = begin;
  while (pos < end) {
    const std::size_t start = pos;
    const std::uint32_t c = cps[pos].cp;
    // 's|'t|'re|'ve|'m|'ll|'d
    if (c == '\'' && exists(pos + 1)) {
      const std::uint32_t n1 = cp_at(pos + 1);
      if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
        emit(start, pos + 2);
        pos += 2;
        continue;
      }
      if (exists(pos + 2)) {
        const std::uint32_t n2 = cp_at(pos + 2);
        if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
          emit(start, pos + 3);
          pos += 3;
          continue;
        }
      }
    }
    const std::size_t body = (c == ' ') ? pos + 1 : pos;
    const std::uint8_t f = flags_at(body);
    // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+'
    if (exists(body) && (f & kLetter)) {
      pos = body;
      while (flags_at(pos) & kLetter) ++pos;
      emit(start, pos);
      continue;
    }
    if (exists(body) && (f & kNumber)) {
      pos = body;
      while (flags_at(pos) & kNumber) ++pos;
      emit(start, pos);
      continue;
    }
    if (exists(body) && !(f & kAny)) {
      pos = body;
      while (exists(pos) && !(flags_at(pos) & kAny)) ++pos;
      emit(start, pos);
      continue;
    }
    // '\s+(?!\S)' then '\s+'
    std::size_t spaces = 0;
    while (flags_at(pos + spaces) & kWhitespace) ++spaces;
    if (spaces > 1 && exists(pos + spaces)) {
      pos += spaces - 1;
      emit(start, pos);
      continue;
    }
    if (spaces > 0) {
      pos += spaces;
      emit(start, pos);
      continue;
    }
    emit(start, ++pos);  // cannot happen for well-formed input; keeps the loop total
  }
}

bool is_plain(TokenType t) { return t != TokenType::kControl && t != TokenType::kUnknown; }

// GPT-2's reversible byte → printable code point map.
void build_byte_map(std::string (&byte_to_text)[256], std::unordered_map<std::uint32_t, std::uint8_t>& back) {
  std::uint32_t next = 256;
  for (std::uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    const std::uint32_t cp = printable ? b : next++;
    byte_to_text[b].clear();
    append_utf8(byte_to_text[b], cp);
    back[cp] = static_cast<std::uint8_t>(b);
  }
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GgufFile& file) {
  const std::string model = file.get_string("tokenizer.ggml.model");
  if (model != "gpt2") {
    throw std::runtime_error(file.path() + ": tokenizer.ggml.model is \"" + model +
                             "\"; supported: \"gpt2\" (byte-level BPE)");
  }
  const std::string pre_name = file.has("tokenizer.ggml.pre") ? file.get_string("tokenizer.ggml.pre") : "default";
  PreTokenizer pre;
  if (pre_name == "gpt2" || pre_name == "default" || pre_name == "mpt" || pre_name == "olmo") {
    pre = PreTokenizer::kGpt2;
  } else if (pre_name == "smollm" || pre_name == "starcoder" || pre_name == "refact" ||
             pre_name == "command-r" || pre_name == "codeshell" || pre_name == "exaone") {
    pre = PreTokenizer::kDigits;
  } else {
    throw std::runtime_error(file.path() + ": tokenizer.ggml.pre \"" + pre_name +
                             "\" is not supported; supported: gpt2, smollm, starcoder, refact, "
                             "command-r, codeshell, exaone");
  }
  std::vector<std::string> tokens = file.get_strings("tokenizer.ggml.tokens");
  std::vector<TokenType> types(tokens.size(), TokenType::kNormal);
  if (file.has("tokenizer.ggml.token_type")) {
    const auto& raw = file.get_integers("tokenizer.ggml.token_type");
    if (raw.size() != tokens.size()) {
      throw std::runtime_error(file.path() + ": tokenizer.ggml.token_type has " + std::to_string(raw.size()) +
                               " entries for " + std::to_string(tokens.size()) + " tokens");
    }
    for (std::size_t i = 0; i < raw.size(); ++i) types[i] = static_cast<TokenType>(raw[i]);
  }
  auto id_of = [&](const char* key, TokenId fallback) {
    const std::uint64_t id = file.get_uint_or(key, static_cast<std::uint64_t>(fallback));
    if (id >= tokens.size()) throw std::runtime_error(file.path() + ": " + key + " is out of the vocabulary");
    return static_cast<TokenId>(id);
  };
  const TokenId bos = id_of("tokenizer.ggml.bos_token_id", 0);
  const TokenId eos = id_of("tokenizer.ggml.eos_token_id", 0);
  return std::make_unique<Tokenizer>(std::move(tokens), std::move(types),
                                     file.get_strings("tokenizer.ggml.merges"), pre, bos, eos);
}

Tokenizer::Tokenizer(std::vector<std::string> tokens, std::vector<TokenType> types,
                     const std::vector<std::string>& merges, PreTokenizer pre, TokenId bos, TokenId eos)
    : tokens_(std::move(tokens)), types_(std::move(types)), pre_(pre), bos_(bos), eos_(eos) {
  TG_CHECK(tokens_.size() == types_.size());
  build_byte_map(byte_to_text_, text_to_byte_);
  for (std::size_t i = 0; i < tokens_.size(); ++i) ids_.emplace(tokens_[i], static_cast<TokenId>(i));
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    merge_rank_.emplace(merges[rank], static_cast<int>(rank));
  }
  for (int b = 0; b < 256; ++b) {
    auto it = ids_.find(byte_to_text_[b]);
    byte_token_[b] = it == ids_.end() ? -1 : it->second;
  }
  for (std::size_t i = 0; i < tokens_.size(); ++i) {
    const TokenType t = types_[i];
    if ((t == TokenType::kControl || t == TokenType::kUserDefined || t == TokenType::kUnknown) &&
        !tokens_[i].empty()) {
      specials_.push_back(static_cast<TokenId>(i));
    }
  }
  std::stable_sort(specials_.begin(), specials_.end(), [&](TokenId a, TokenId b) {
    return tokens_[static_cast<std::size_t>(a)].size() > tokens_[static_cast<std::size_t>(b)].size();
  });
  end_of_generation_.push_back(eos_);
  for (const char* text : {"<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>"}) {
    if (auto id = find(text); id && types_[static_cast<std::size_t>(*id)] == TokenType::kControl) {
      end_of_generation_.push_back(*id);
    }
  }
}

std::optional<TokenId> Tokenizer::find(std::string_view text) const {
  auto it = ids_.find(std::string(text));
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

bool Tokenizer::is_end_of_generation(TokenId token) const {
  return std::find(end_of_generation_.begin(), end_of_generation_.end(), token) != end_of_generation_.end();
}

std::vector<std::string> Tokenizer::pre_tokenize(std::string_view text) const {
  std::vector<std::string> words;
  const std::vector<Codepoint> cps = codepoints_of(text);
  auto emit = [&](std::size_t first, std::size_t last) {
    const std::size_t from = cps[first].offset;
    const std::size_t to = cps[last - 1].offset + cps[last - 1].length;
    words.emplace_back(text.substr(from, to - from));
  };
  if (pre_ == PreTokenizer::kGpt2) {
    split_gpt2(cps, 0, cps.size(), emit);
    return words;
  }
  // \p{N} alone first; the text between numbers goes through the GPT-2 rule piece by piece.
  std::size_t begin = 0;
  for (std::size_t i = 0; i <= cps.size(); ++i) {
    if (i < cps.size() && !(cps[i].flags & kNumber)) continue;
    if (i > begin) split_gpt2(cps, begin, i, emit);
    if (i < cps.size()) emit(i, i + 1);
    begin = i + 1;
  }
  return words;
}

void Tokenizer::encode_word(std::string_view word, std::vector<TokenId>& out) const {
  // Symbols start as one byte each (one code point of the byte-level text) and merge by rank.
  struct Symbol {
    std::string text;
    int prev, next;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  for (std::size_t i = 0; i < word.size(); ++i) {
    symbols.push_back({byte_to_text_[static_cast<unsigned char>(word[i])], static_cast<int>(i) - 1,
                       i + 1 < word.size() ? static_cast<int>(i) + 1 : -1});
  }
  struct Bigram {
    int rank;
    int left;
    std::size_t size;  // bytes of the merged text: detects stale entries
    bool operator>(const Bigram& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::priority_queue<Bigram, std::vector<Bigram>, std::greater<>> queue;
  auto try_pair = [&](int left) {
    if (left < 0) return;
    const int right = symbols[static_cast<std::size_t>(left)].next;
    if (right < 0) return;
    const std::string& a = symbols[static_cast<std::size_t>(left)].text;
    const std::string& b = symbols[static_cast<std::size_t>(right)].text;
    auto it = merge_rank_.find(a + " " + b);
    if (it != merge_rank_.end()) queue.push({it->second, left, a.size() + b.size()});
  };
  for (std::size_t i = 0; i + 1 < symbols.size(); ++i) try_pair(static_cast<int>(i));
  while (!queue.empty()) {
    const Bigram top = queue.top();
    queue.pop();
    Symbol& left = symbols[static_cast<std::size_t>(top.left)];
    if (left.text.empty() || left.next < 0) continue;
    Symbol& right = symbols[static_cast<std::size_t>(left.next)];
    if (left.text.size() + right.text.size() != top.size) continue;  // stale
    left.text += right.text;
    right.text.clear();
    left.next = right.next;
    if (right.next >= 0) symbols[static_cast<std::size_t>(right.next)].prev = top.left;
    try_pair(left.prev);
    try_pair(top.left);
  }
  for (int i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[static_cast<std::size_t>(i)].next) {
    const Symbol& sym = symbols[static_cast<std::size_t>(i)];
    // A merge that spells a special token's text is still plain text: never its id.
    if (auto it = ids_.find(sym.text); it != ids_.end() && is_plain(types_[static_cast<std::size_t>(it->second)])) {
      out.push_back(it->second);
      continue;
    }
    // Not in the vocabulary: fall back to one token per byte.
    for (std::size_t k = 0; k < sym.text.size();) {
      const DecodedCodepoint d = decode_utf8(sym.text, k);
      auto byte = text_to_byte_.find(d.codepoint);
      TG_CHECK(byte != text_to_byte_.end());
      const TokenId id = byte_token_[byte->second];
      if (id >= 0) out.push_back(id);
      k += d.length;
    }
  }
}

void Tokenizer::encode_plain(std::string_view text, std::vector<TokenId>& out) const {
  for (const std::string& word : pre_tokenize(text)) encode_word(word, out);
}

template <typename Allowed>
std::vector<TokenId> Tokenizer::encode_with(std::string_view text, Allowed special_allowed) const {
  // Cut the text at special tokens (longest first), then BPE each plain fragment on its own.
  struct Fragment {
    TokenId token;  // -1: plain text
    std::size_t offset, length;
  };
  std::vector<Fragment> fragments = {{-1, 0, text.size()}};
  for (TokenId special : specials_) {
    const std::string& needle = tokens_[static_cast<std::size_t>(special)];
    std::vector<Fragment> next;
    for (const Fragment& f : fragments) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      std::size_t at = f.offset;  // plain text of this fragment not yet emitted starts here
      std::size_t from = f.offset;
      const std::size_t end = f.offset + f.length;
      while (from < end) {
        const std::size_t hit = text.substr(0, end).find(needle, from);
        if (hit == std::string_view::npos) break;
        if (!special_allowed(special, hit, hit + needle.size())) {
          from = hit + 1;
          continue;
        }
        if (hit > at) next.push_back({-1, at, hit - at});
        next.push_back({special, hit, needle.size()});
        at = from = hit + needle.size();
      }
      if (at < end) next.push_back({-1, at, end - at});
    }
    fragments = std::move(next);
  }
  std::vector<TokenId> out;
  for (const Fragment& f : fragments) {
    if (f.token >= 0) {
      out.push_back(f.token);
    } else {
      encode_plain(text.substr(f.offset, f.length), out);
    }
  }
  return out;
}

std::vector<TokenId> Tokenizer::encode(std::string_view text, bool parse_special) const {
  return encode_with(text, [&](TokenId special, std::size_t, std::size_t) {
    return parse_special || types_[static_cast<std::size_t>(special)] == TokenType::kUserDefined;
  });
}

std::vector<TokenId> Tokenizer::encode_templated(std::string_view text, std::span<const TextRange> markup) const {
  return encode_with(text, [&](TokenId, std::size_t begin, std::size_t end) {
    // The first range ending at or after `end`; the occurrence counts only inside it.
    const auto it = std::lower_bound(markup.begin(), markup.end(), end,
                                     [](const TextRange& r, std::size_t e) { return r.end < e; });
    return it != markup.end() && it->begin <= begin && end <= it->end;
  });
}

std::string Tokenizer::token_bytes(TokenId token, bool render_special) const {
  TG_CHECK(token >= 0 && static_cast<std::size_t>(token) < tokens_.size());
  const std::string& text = tokens_[static_cast<std::size_t>(token)];
  switch (types_[static_cast<std::size_t>(token)]) {
    case TokenType::kControl:
    case TokenType::kUnknown:
      return render_special ? text : std::string();
    case TokenType::kUserDefined:
      return text;
    default:
      break;
  }
  std::string bytes;
  for (std::size_t k = 0; k < text.size();) {
    const DecodedCodepoint d = decode_utf8(text, k);
    if (auto it = text_to_byte_.find(d.codepoint); it != text_to_byte_.end()) {
      bytes += static_cast<char>(it->second);
    } else {
      bytes.append(text, k, d.length);
    }
    k += d.length;
  }
  return bytes;
}

std::string Tokenizer::decode(std::span<const TokenId> tokens, bool render_special) const {
  std::string out;
  for (TokenId t : tokens) out += token_bytes(t, render_special);
  return out;
}

std::string StreamingDetokenizer::push(TokenId token) {
  pending_ += tokenizer_.token_bytes(token, render_special_);
  const std::size_t ready = complete_utf8_prefix(pending_);
  std::string out = to_valid_utf8(std::string_view(pending_).substr(0, ready));
  pending_.erase(0, ready);
  return out;
}

std::string StreamingDetokenizer::flush() {
  std::string out = to_valid_utf8(pending_);
  pending_.clear();
  return out;
}

}  // namespace tiergate::engine
