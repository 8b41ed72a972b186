// gateway/private_file.*: secrets are owner-only from the moment they exist; readable ones warned about.
#include "gateway/private_file.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>

#include "gateway/api_keys.h"

namespace tiergate::gateway {
namespace {

std::string fresh_dir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "private_file_" + name + "_" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

unsigned mode_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

TEST(PrivateFile, IsOwnerOnlyWhateverTheUmask) {
  const std::string dir = fresh_dir("umask");
  const mode_t old = ::umask(0);
  write_private_file(dir + "/sub/secret", "s3cret");
  const std::string keys = dir + "/api_keys.json";
  ApiKeyStore::add_key(keys, "alice", {"a"}, false, false);
  ::umask(old);
  EXPECT_EQ(mode_of(dir + "/sub/secret"), 0600u);
  EXPECT_EQ(mode_of(keys), 0600u);
  std::ifstream in(dir + "/sub/secret");
  std::string text;
  in >> text;
  EXPECT_EQ(text, "s3cret");
}

// A write that fails half way (the file size limit, as a full disk would) leaves nothing behind:
// no partial file, and never one that others could read.
TEST(PrivateFile, AFailedWriteLeavesNothing) {
  const std::string dir = fresh_dir("fail");
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::umask(0);
    std::signal(SIGXFSZ, SIG_IGN);
    rlimit limit{16, 16};
    ::setrlimit(RLIMIT_FSIZE, &limit);
    try {
      write_private_file(dir + "/secret", std::string(4096, 'x'));
      ::_exit(1);  // should have failed
    } catch (const std::runtime_error&) {
      ::_exit(0);
    }
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_TRUE(std::filesystem::is_empty(dir));
}

TEST(PrivateFile, WarnsWhenOthersCanRead) {
  const std::string dir = fresh_dir("warn");
  const std::string path = dir + "/api_keys.json";
  write_private_file(path, "{}");
  EXPECT_FALSE(readable_by_others_warning(path, "API keys"));
  ::chmod(path.c_str(), 0644);
  const auto warning = readable_by_others_warning(path, "API keys");
  ASSERT_TRUE(warning);
  EXPECT_NE(warning->find("0644"), std::string::npos);
  EXPECT_NE(warning->find("chmod 600 " + path), std::string::npos);
  EXPECT_FALSE(readable_by_others_warning(dir + "/absent", "API keys"));
}

TEST(ApiKeysFile, ParseNamesTheFileAndTheField) {
  const std::string hash(64, 'a');
  EXPECT_EQ(ApiKeyStore::parse(R"({"keys": [{"sha256": ")" + hash + R"(", "users": "*"}]})", "k.json")->size(), 1u);
  auto message = [](const std::string& text) {
    try {
      ApiKeyStore::parse(text, "k.json");
    } catch (const ApiKeyError& e) {
      return std::string(e.what());
    }
    return std::string("<accepted>");
  };
  EXPECT_EQ(message("{"), "k.json: not valid JSON (expected {\"keys\": [...]})");
  EXPECT_EQ(message(R"({"keys": 3})"), "k.json: $.keys must be an array");
  EXPECT_EQ(message(R"({"keys": [{"sha256": ")" + std::string(64, 'g') + R"(", "users": "*"}]})"),
            "k.json: $.keys[0].sha256 must be 64 hex digits");
  EXPECT_EQ(message(R"({"keys": [{"sha256": ")" + hash + R"("}]})"), "k.json: $.keys[0].users is missing (\"*\" or a list)");
  // Upper-case hex matches the lower-case digest.
  const std::string upper = sha256_hex("tg-x");
  std::string shouting;
  for (char c : upper) shouting += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const auto store = ApiKeyStore::parse(R"({"keys": [{"sha256": ")" + shouting + R"(", "users": ["u"]}]})", "k.json");
  EXPECT_TRUE(store->authenticate("tg-x"));
}

}  // namespace
}  // namespace tiergate::gateway
