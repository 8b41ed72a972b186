// Byte-level BPE tokenizer (GPT-2 family) built from a GGUF file's tokenizer.ggml.* metadata:
// vocabulary, merges, token types and the pre-tokenizer named by tokenizer.ggml.pre. Valid UTF-8
// tokenizes as llama.cpp does; ill-formed bytes go through the byte-level fallback, so
// decode(encode(x)) == x for every byte the vocabulary has a token for. A vocabulary may lack a few
// byte tokens (SmolLM2's has no token for 21 bytes: some control characters and bytes that never
// occur in UTF-8); those bytes are dropped, where llama.cpp would throw. Immutable after
// construction; any thread may use it.
// from_gguf throws std::runtime_error naming what is unsupported (start-up tier).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tiergate::engine {

class GgufFile;

using TokenId = std::int32_t;

// GGUF token types (llama.cpp's llama_token_type).
enum class TokenType : std::uint8_t {
  kUndefined = 0, kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6
};

// How text is cut into words before BPE, by tokenizer.ggml.pre.
enum class PreTokenizer {
  kGpt2,    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kDigits,  // every \p{N} alone first, then the GPT-2 rule (smollm, starcoder, refact, ...)
};

// A byte range [begin, end) of a text.
struct TextRange {
  std::size_t begin = 0;
  std::size_t end = 0;
};

class Tokenizer {
 public:
  static std::unique_ptr<Tokenizer> from_gguf(const GgufFile& file);
  Tokenizer(std::vector<std::string> tokens, std::vector<TokenType> types,
            const std::vector<std::string>& merges, PreTokenizer pre, TokenId bos, TokenId eos);

  // With parse_special, control tokens written in the text (e.g. "<|im_start|>") become their
  // ids; user-defined tokens always do (as in llama.cpp). Without it no control token comes out,
  // however the text is spelled (BPE that would spell one falls back to its bytes).
  std::vector<TokenId> encode(std::string_view text, bool parse_special) const;
  // A prompt where only trusted markup may produce special tokens: `markup` lists the ranges
  // (sorted, disjoint) written by the chat template; a special token is recognised only when it
  // lies wholly inside one. The rest, the client's text, is plain: it never yields a control
  // token, and a user-defined token only where BPE itself spells one. Plain text on both sides of a boundary is BPE'd together, so a benign
  // prompt tokenizes exactly as encode(text, true) does.
  std::vector<TokenId> encode_templated(std::string_view text, std::span<const TextRange> markup) const;
  // The bytes the tokens stand for. Control tokens are rendered only when asked.
  std::string decode(std::span<const TokenId> tokens, bool render_special = false) const;
  std::string token_bytes(TokenId token, bool render_special = false) const;

  std::size_t vocab_size() const { return tokens_.size(); }
  bool can_encode_byte(unsigned char byte) const { return byte_token_[byte] >= 0; }
  const std::string& token_text(TokenId token) const { return tokens_.at(static_cast<std::size_t>(token)); }
  TokenType token_type(TokenId token) const { return types_.at(static_cast<std::size_t>(token)); }
  std::optional<TokenId> find(std::string_view text) const;
  TokenId bos() const { return bos_; }
  TokenId eos() const { return eos_; }
  // End of generation: the eos token and the chat-turn terminators such as <|im_end|>.
  bool is_end_of_generation(TokenId token) const;

  // Word splitting alone (exposed for tests): each word's original bytes.
  std::vector<std::string> pre_tokenize(std::string_view text) const;

 private:
  // special_allowed(token, begin, end): may this occurrence become the special token?
  template <typename Allowed>
  std::vector<TokenId> encode_with(std::string_view text, Allowed special_allowed) const;
  void encode_word(std::string_view word, std::vector<TokenId>& out) const;
  void encode_plain(std::string_view text, std::vector<TokenId>& out) const;

  std::vector<std::string> tokens_;
  std::vector<TokenType> types_;
  std::unordered_map<std::string, TokenId> ids_;
  std::unordered_map<std::string, int> merge_rank_;  // "left right" → rank
  std::vector<TokenId> specials_;                     // longest text first
  std::vector<TokenId> end_of_generation_;
  PreTokenizer pre_;
  TokenId bos_;
  TokenId eos_;
  std::string byte_to_text_[256];                     // GPT-2 byte → printable code point, UTF-8
  std::unordered_map<std::uint32_t, std::uint8_t> text_to_byte_;
  TokenId byte_token_[256];                           // token of each single byte, -1 if none
};

// Turns a stream of tokens into text without ever emitting half a UTF-8 character: bytes of an
// unfinished sequence are held until the next token completes them (or flush() gives up on them).
// What it emits is always well-formed UTF-8: bytes that can never form a character (a generation
// cut mid-character, a stray continuation byte) come out as U+FFFD.
class StreamingDetokenizer {
 public:
  // render_special: control tokens come out as their text (skip_special_tokens: false).
  explicit StreamingDetokenizer(const Tokenizer& tokenizer, bool render_special = false)
      : tokenizer_(tokenizer), render_special_(render_special) {}
  std::string push(TokenId token);
  std::string flush();

 private:
  const Tokenizer& tokenizer_;
  bool render_special_;
  std::string pending_;
};

}  // namespace tiergate::engine
