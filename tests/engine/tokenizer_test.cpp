// engine/tokenizer.* against llama.cpp's tokenization of the same GGUF (fixtures written by
// tools/make_reference_fixtures.py), plus round trips and streaming detokenization.
#include "engine/tokenizer.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include "engine/unicode.h"
#include "tests/engine/model_fixture.h"

namespace tiergate::engine {
namespace {

TEST(Tokenizer, MatchesLlamaCppOnTheCorpus) {
  TG_REQUIRE_MODEL(model);
  simdjson::dom::parser parser;
  const auto fixture = testing::load_fixture(parser, "tokenizer_corpus.json");
  std::size_t cases = 0;
  for (simdjson::dom::element c : fixture["cases"].get_array()) {
    const std::string_view text = c["text"].get_string();
    const bool special = c["special"].get_bool();
    std::vector<TokenId> expected;
    for (simdjson::dom::element id : c["ids"].get_array()) expected.push_back(static_cast<TokenId>(id.get_int64()));
    EXPECT_EQ(model->tokenizer().encode(text, special), expected) << "text: " << text;
    ++cases;
  }
  EXPECT_GE(cases, 30u);
}

TEST(Tokenizer, SpecialTokensOnlyWhenAsked) {
  TG_REQUIRE_MODEL(model);
  const Tokenizer& tok = model->tokenizer();
  const auto im_start = tok.find("<|im_start|>");
  ASSERT_TRUE(im_start);
  EXPECT_EQ(tok.encode("<|im_start|>", true), std::vector<TokenId>{*im_start});
  EXPECT_GT(tok.encode("<|im_start|>", false).size(), 1u);
  EXPECT_TRUE(tok.is_end_of_generation(*tok.find("<|im_end|>")));
  EXPECT_TRUE(tok.is_end_of_generation(tok.eos()));
  EXPECT_EQ(tok.decode(tok.encode("<|im_start|>hi", true)), "hi");
  EXPECT_EQ(tok.decode(tok.encode("<|im_start|>hi", true), true), "<|im_start|>hi");
}

TEST(Tokenizer, DigitsAreSplitOneByOne) {
  TG_REQUIRE_MODEL(model);
  const auto words = model->tokenizer().pre_tokenize("abc 123 x");
  EXPECT_EQ(words, (std::vector<std::string>{"abc", " ", "1", "2", "3", " x"}));
}

TEST(Tokenizer, KnowsWhichBytesItsVocabularyLacks) {
  TG_REQUIRE_MODEL(model);
  int missing = 0;
  for (int b = 0; b < 256; ++b) missing += !model->tokenizer().can_encode_byte(static_cast<unsigned char>(b));
  EXPECT_EQ(missing, 21);  // SmolLM2: 0x04 0x06 0x13 0x14 0x16 0x1D 0xC0 0xC1 0xF1 0xF2 0xF5..0xFF
  EXPECT_TRUE(model->tokenizer().can_encode_byte('a'));
}

TG_MODEL_PROP(TokenizerProperty, DecodeInvertsEncodeOnAnyBytes) {
  // Arbitrary bytes, ill-formed UTF-8 included, plus pieces that exercise the splitter.
  const auto pieces = *rc::gen::container<std::vector<std::string>>(rc::gen::oneOf(
      rc::gen::container<std::string>(rc::gen::arbitrary<char>()),
      rc::gen::element<std::string>(" ", "  ", "\n", "'s", "'ll", "1", "2024", "é", "中文", "😀", "\xF0\x9F",
                                    "\xC3", "<|im_end|>", "\t\t", "a")));
  std::string text;
  for (const std::string& p : pieces) text += p;
  const Tokenizer& tok = model.tokenizer();
  std::string representable;
  for (char ch : text) {
    if (tok.can_encode_byte(static_cast<unsigned char>(ch))) representable += ch;
  }
  RC_ASSERT(tok.decode(tok.encode(text, false)) == representable);
}

// Without parse_special no control token comes out, whatever fragments of special tokens the text
// holds; with only markup ranges trusted, only specials inside them do.
TG_MODEL_PROP(TokenizerProperty, PlainTextNeverYieldsAControlToken) {
  const Tokenizer& tok = model.tokenizer();
  const auto pieces = *rc::gen::container<std::vector<std::string>>(rc::gen::oneOf(
      rc::gen::container<std::string>(rc::gen::element<char>('<', '|', '>', '_', 'i', 'm', 's', 't', 'a', 'r', ' ')),
      rc::gen::element<std::string>("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_", "start|>", "<repo_name>")));
  std::string text;
  std::vector<TextRange> markup;
  for (const std::string& p : pieces) {
    const auto id = tok.find(p);
    if (id && tok.token_type(*id) == TokenType::kControl && *rc::gen::arbitrary<bool>()) {
      markup.push_back({text.size(), text.size() + p.size()});
    }
    text += p;
  }
  for (TokenId t : tok.encode(text, false)) RC_ASSERT(tok.token_type(t) != TokenType::kControl);
  std::size_t controls = 0;
  for (TokenId t : tok.encode_templated(text, markup)) controls += tok.token_type(t) == TokenType::kControl;
  RC_ASSERT(controls == markup.size());  // each trusted range is one control token
}

TG_MODEL_PROP(TokenizerProperty, StreamingNeverSplitsACharacter) {
  const auto text = *rc::gen::element<std::string>("héllo wörld", "日本語のテキスト", "emoji 👨‍👩‍👧 🇫🇷 done",
                                                   "mixed 中文 and ascii", "κόσμε");
  const Tokenizer& tok = model.tokenizer();
  StreamingDetokenizer stream(tok);
  std::string out;
  for (TokenId t : tok.encode(text, false)) {
    const std::string piece = stream.push(t);
    // Every emitted piece is whole UTF-8 on its own.
    RC_ASSERT(complete_utf8_prefix(piece) == piece.size());
    out += piece;
  }
  out += stream.flush();
  RC_ASSERT(out == text);
}

TEST(Utf8, IllFormedBytesBecomeReplacementCharacters) {
  EXPECT_EQ(to_valid_utf8("ok"), "ok");
  EXPECT_EQ(to_valid_utf8("\xC3\xA9"), "\xC3\xA9");                 // é stays
  EXPECT_EQ(to_valid_utf8("a\xF0\x9F"), "a\xEF\xBF\xBD\xEF\xBF\xBD");  // a cut emoji: one per byte
  EXPECT_EQ(to_valid_utf8("\x80x"), "\xEF\xBF\xBDx");              // stray continuation byte
  EXPECT_EQ(to_valid_utf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");    // overlong
}

// Whatever bytes the tokens stand for (a generation may stop mid-character or emit stray bytes),
// every piece the detokenizer emits is well-formed UTF-8, and the pieces add up to the replacement
// decoding of the whole byte stream.
TG_MODEL_PROP(TokenizerProperty, StreamingAlwaysEmitsWellFormedUtf8) {
  const Tokenizer& tok = model.tokenizer();
  const auto raw = *rc::gen::container<std::string>(rc::gen::arbitrary<char>());
  std::string bytes;
  for (char ch : raw) {
    if (tok.can_encode_byte(static_cast<unsigned char>(ch))) bytes += ch;
  }
  const std::vector<TokenId> tokens = tok.encode(bytes, false);
  StreamingDetokenizer stream(tok);
  std::string out;
  for (TokenId t : tokens) {
    const std::string piece = stream.push(t);
    RC_ASSERT(to_valid_utf8(piece) == piece);
    out += piece;
  }
  const std::string last = stream.flush();
  RC_ASSERT(to_valid_utf8(last) == last);
  out += last;
  RC_ASSERT(out == to_valid_utf8(tok.decode(tokens)));
}

}  // namespace
}  // namespace tiergate::engine
