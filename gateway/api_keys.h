// API keys: stored only as SHA-256 hashes in a JSON file, each bound to a list of user ids (at
// least one, none of them "") or to "*" (a trusted backend that may act for any user), optionally
// marked admin. Lookups hash the
// presented key and compare in constant time; keys are never logged. Immutable after load (reload
// = build a new store); thread-safe to read.
//
// File format: {"keys": [{"name": "saas", "sha256": "<64 hex>", "users": "*", "admin": false},
//                        {"name": "alice", "sha256": "...", "users": ["alice"]}]}
#pragma once

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace tiergate::gateway {

struct ApiKey {
  std::string name;
  std::string sha256;               // lowercase hex
  bool any_user = false;            // "*"
  std::vector<std::string> users;   // when not any_user
  bool admin = false;

  bool may_act_for(std::string_view user) const;
};

class ApiKeyError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ApiKeyStore {
 public:
  // Throws ApiKeyError naming the file, the JSON path and the problem (a key bound to no user or
  // to "" among them). A missing file is an empty store.
  static std::shared_ptr<const ApiKeyStore> load(const std::string& path);
  // The same from the file's text (`file` names it in messages). Throws ApiKeyError.
  static std::shared_ptr<const ApiKeyStore> parse(std::string_view text, const std::string& file);
  static std::shared_ptr<const ApiKeyStore> from_keys(std::vector<ApiKey> keys);

  // The key's record, or nullopt for an unknown key.
  std::optional<ApiKey> authenticate(std::string_view presented) const;
  // The record whose stored hash is `sha256` (lowercase hex), or nullopt (a revoked key).
  std::optional<ApiKey> find_by_hash(std::string_view sha256) const;
  std::size_t size() const { return keys_.size(); }

  // Appends a new random key to the file (created if absent, mode 0600 from the start) and returns
  // it; only its hash is stored. Throws ApiKeyError.
  static std::string add_key(const std::string& path, const std::string& name, const std::vector<std::string>& users,
                             bool any_user, bool admin);

 private:
  std::vector<ApiKey> keys_;
};

std::string sha256_hex(std::string_view data);
// `bytes` random bytes from OpenSSL as lowercase hex; throws ApiKeyError when there are none.
std::string random_hex(std::size_t bytes);

}  // namespace tiergate::gateway
