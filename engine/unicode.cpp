#include "engine/unicode.h"

#include <algorithm>

namespace tiergate::engine {
namespace {

// Expected length of a sequence from its lead byte, with the allowed range of the second byte
// (which rules out overlongs, surrogates and code points past U+10FFFF); 0 = not a lead byte.
struct Lead {
  std::size_t length;
  unsigned char lo, hi;
};

Lead lead_of(unsigned char c) {
  if (c < 0x80) return {1, 0, 0};
  if (c >= 0xC2 && c <= 0xDF) return {2, 0x80, 0xBF};
  if (c == 0xE0) return {3, 0xA0, 0xBF};
  if (c == 0xED) return {3, 0x80, 0x9F};
  if (c >= 0xE1 && c <= 0xEF) return {3, 0x80, 0xBF};
  if (c == 0xF0) return {4, 0x90, 0xBF};
  if (c >= 0xF1 && c <= 0xF3) return {4, 0x80, 0xBF};
  if (c == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

std::uint8_t lookup(const CodepointRange* ranges, std::size_t count, std::uint32_t cp) {
  const CodepointRange* end = ranges + count;
  const CodepointRange* it = std::upper_bound(
      ranges, end, cp, [](std::uint32_t value, const CodepointRange& r) { return value < r.first; });
  if (it == ranges) return 0;
  --it;
  return cp <= it->last ? it->flags : 0;
}

}  // namespace

DecodedCodepoint decode_utf8(std::string_view text, std::size_t offset) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data()) + offset;
  const std::size_t available = text.size() - offset;
  const Lead lead = lead_of(p[0]);
  if (lead.length == 1) return {p[0], 1};
  if (lead.length == 0 || available < lead.length || p[1] < lead.lo || p[1] > lead.hi) {
    return {kInvalidCodepoint, 1};
  }
  std::uint32_t cp = p[0] & (0xFF >> (lead.length + 1));
  for (std::size_t k = 1; k < lead.length; ++k) {
    if (k > 1 && (p[k] < 0x80 || p[k] > 0xBF)) return {kInvalidCodepoint, 1};
    cp = (cp << 6) | (p[k] & 0x3F);
  }
  return {cp, lead.length};
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::uint8_t codepoint_flags(std::uint32_t cp) {
  if (cp == kInvalidCodepoint) return 0;
  return lookup(unicode_data::kCategoryRanges, unicode_data::kCategoryRangeCount, cp) |
         lookup(unicode_data::kWhitespaceRanges, unicode_data::kWhitespaceRangeCount, cp);
}

std::size_t complete_utf8_prefix(std::string_view bytes) {
  // Only the last three bytes can belong to an unfinished sequence.
  const std::size_t n = bytes.size();
  for (std::size_t back = 1; back <= std::min<std::size_t>(3, n); ++back) {
    const auto c = static_cast<unsigned char>(bytes[n - back]);
    if (c >= 0x80 && c <= 0xBF) continue;  // continuation byte: look further back
    const Lead lead = lead_of(c);
    if (lead.length <= back) return n;  // complete (or not a lead byte at all): emit everything
    // A lead byte whose sequence is not finished yet: hold it back if what follows is consistent.
    const std::string_view tail = bytes.substr(n - back);
    for (std::size_t k = 1; k < tail.size(); ++k) {
      const auto t = static_cast<unsigned char>(tail[k]);
      const bool ok = k == 1 ? (t >= lead.lo && t <= lead.hi) : (t >= 0x80 && t <= 0xBF);
      if (!ok) return n;  // ill-formed already: it will never complete, emit it as is
    }
    return n - back;
  }
  return n;
}

std::string to_valid_utf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (std::size_t k = 0; k < bytes.size();) {
    const DecodedCodepoint d = decode_utf8(bytes, k);
    if (d.codepoint == kInvalidCodepoint) {
      out += "\xEF\xBF\xBD";  // U+FFFD
    } else {
      out.append(bytes, k, d.length);
    }
    k += d.length;
  }
  return out;
}

}  // namespace tiergate::engine
