#include "gateway/api_keys.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <simdjson.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "gateway/private_file.h"
#include "qos/config_writer.h"

namespace tiergate::gateway {

bool ApiKey::may_act_for(std::string_view user) const {
  return any_user || std::find(users.begin(), users.end(), user) != users.end();
}

std::string random_hex(std::size_t bytes) {
  std::vector<unsigned char> raw(bytes);
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1) {
    throw ApiKeyError("cannot get random bytes from OpenSSL");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : raw) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

std::string sha256_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 15];
  }
  return out;
}

std::shared_ptr<const ApiKeyStore> ApiKeyStore::from_keys(std::vector<ApiKey> keys) {
  auto store = std::make_shared<ApiKeyStore>();
  store->keys_ = std::move(keys);
  return store;
}

std::shared_ptr<const ApiKeyStore> ApiKeyStore::load(const std::string& path) {
  if (!std::filesystem::exists(path)) return from_keys({});
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  if (!(text << in.rdbuf())) throw ApiKeyError(path + ": cannot read");
  return parse(text.str(), path);
}

std::shared_ptr<const ApiKeyStore> ApiKeyStore::parse(std::string_view contents, const std::string& path) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  const simdjson::padded_string padded(contents);
  if (parser.parse(padded).get(root) != simdjson::SUCCESS) {
    throw ApiKeyError(path + ": not valid JSON (expected {\"keys\": [...]})");
  }
  simdjson::dom::array list;
  if (root["keys"].get_array().get(list) != simdjson::SUCCESS) {
    throw ApiKeyError(path + ": $.keys must be an array");
  }
  std::vector<ApiKey> keys;
  std::size_t i = 0;
  for (simdjson::dom::element e : list) {
    const std::string at = path + ": $.keys[" + std::to_string(i++) + "]";
    ApiKey k;
    std::string_view text;
    if (e["sha256"].get_string().get(text) != simdjson::SUCCESS || text.size() != 64) {
      throw ApiKeyError(at + ".sha256 must be 64 hex digits");
    }
    for (char c : text) {
      if (!std::isxdigit(static_cast<unsigned char>(c))) throw ApiKeyError(at + ".sha256 must be 64 hex digits");
      k.sha256 += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    if (e["name"].get_string().get(text) == simdjson::SUCCESS) k.name = std::string(text);
    bool admin = false;
    if (e["admin"].get_bool().get(admin) == simdjson::SUCCESS) k.admin = admin;
    simdjson::dom::element users;
    if (e["users"].get(users) != simdjson::SUCCESS) throw ApiKeyError(at + ".users is missing (\"*\" or a list)");
    if (users.get_string().get(text) == simdjson::SUCCESS) {
      if (text != "*") throw ApiKeyError(at + ".users must be \"*\" or a list of user ids");
      k.any_user = true;
    } else {
      simdjson::dom::array ids;
      if (users.get_array().get(ids) != simdjson::SUCCESS) throw ApiKeyError(at + ".users must be \"*\" or a list");
      // A key for no user, or for the user "", would act as user "": every such key would share
      // that one user's sessions and quota.
      if (ids.size() == 0) {
        throw ApiKeyError(at + ".users is empty: list the user ids the key may act for, or \"*\" for any user");
      }
      std::size_t u = 0;
      for (simdjson::dom::element id : ids) {
        if (id.get_string().get(text) != simdjson::SUCCESS) throw ApiKeyError(at + ".users holds a non-string");
        if (text.empty()) {
          throw ApiKeyError(at + ".users[" + std::to_string(u) + "] is the empty user id: remove it or name a user");
        }
        k.users.emplace_back(text);
        ++u;
      }
    }
    keys.push_back(std::move(k));
  }
  return from_keys(std::move(keys));
}

std::optional<ApiKey> ApiKeyStore::authenticate(std::string_view presented) const {
  return find_by_hash(sha256_hex(presented));
}

std::optional<ApiKey> ApiKeyStore::find_by_hash(std::string_view hash) const {
  std::optional<ApiKey> found;
  // Compare against every key, in constant time each, so timing reveals nothing about which.
  for (const ApiKey& k : keys_) {
    if (k.sha256.size() == hash.size() && CRYPTO_memcmp(k.sha256.data(), hash.data(), hash.size()) == 0) found = k;
  }
  return found;
}

std::string ApiKeyStore::add_key(const std::string& path, const std::string& name, const std::vector<std::string>& users,
                                 bool any_user, bool admin) {
  std::vector<ApiKey> keys = load(path)->keys_;
  const std::string key = "tg-" + random_hex(24);
  keys.push_back({name, sha256_hex(key), any_user, users, admin});
  std::string out = "{\"keys\": [";
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const ApiKey& k = keys[i];
    out += (i ? ",\n  " : "\n  ") + std::string("{\"name\": ") + qos::json_string(k.name) +
           ", \"sha256\": " + qos::json_string(k.sha256) + ", \"users\": ";
    if (k.any_user) {
      out += "\"*\"";
    } else {
      out += "[";
      for (std::size_t u = 0; u < k.users.size(); ++u) out += (u ? ", " : "") + qos::json_string(k.users[u]);
      out += "]";
    }
    out += std::string(", \"admin\": ") + (k.admin ? "true" : "false") + "}";
  }
  out += "\n]}\n";
  try {
    write_private_file(path, out);
  } catch (const std::runtime_error& e) {
    throw ApiKeyError(e.what());
  }
  return key;
}

}  // namespace tiergate::gateway
