// The tokenizer on any bytes, as the client sends them: plain text never yields a control token;
// decoding gives back every byte the vocabulary can spell; streaming detokenization emits only
// well-formed UTF-8 whatever the tokens; a chat prompt holds exactly the template's control tokens.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/chat_template.h"
#include "engine/tokenizer.h"
#include "engine/unicode.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

std::size_t controls(const tiergate::engine::Tokenizer& tok, const std::vector<tiergate::engine::TokenId>& ids) {
  return static_cast<std::size_t>(std::count_if(ids.begin(), ids.end(), [&](tiergate::engine::TokenId t) {
    return tok.token_type(t) == tiergate::engine::TokenType::kControl;
  }));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tiergate::engine;
  const tiergate::engine::Model& model = tiergate::fuzz::model();
  const Tokenizer& tok = model.tokenizer();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::vector<TokenId> plain = tok.encode(text, false);
  TG_CHECK(controls(tok, plain) == 0);
  std::string representable;
  for (char c : text) {
    if (tok.can_encode_byte(static_cast<unsigned char>(c))) representable += c;
  }
  TG_CHECK(tok.decode(plain) == representable);
  StreamingDetokenizer stream(tok);
  for (TokenId t : tok.encode(text, true)) {
    const std::string piece = stream.push(t);
    TG_CHECK(to_valid_utf8(piece) == piece);
  }
  const std::string rest = stream.flush();
  TG_CHECK(to_valid_utf8(rest) == rest);
  const ChatTemplate chat = ChatTemplate::from_template_text(model.chat_template());
  const std::vector<ChatMessage> messages = {{"user", std::string(text)}};
  const std::vector<ChatMessage> empty = {{"user", ""}};
  TG_CHECK(controls(tok, chat.encode(tok, messages)) == controls(tok, chat.encode(tok, empty)));
  return 0;
}
