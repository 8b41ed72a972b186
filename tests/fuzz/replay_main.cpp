// Where the compiler has no libFuzzer (GCC builds), each fuzz target is linked with this main: it
// runs the target once on every file of the corpus directories given, so the seeds and every
// crash ever found (saved as regression inputs) are replayed by the ordinary test suite.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  std::vector<std::filesystem::path> inputs;
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path p(argv[i]);
    if (!std::filesystem::exists(p)) {  // a missing corpus must not pass as one empty input
      std::fprintf(stderr, "replay: %s does not exist\n", argv[i]);
      std::_Exit(1);
    }
    if (std::filesystem::is_directory(p)) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(p)) {
        if (e.is_regular_file()) inputs.push_back(e.path());
      }
    } else {
      inputs.push_back(p);
    }
  }
  for (const auto& p : inputs) {
    std::ifstream in(p, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  }
  std::printf("replayed %zu inputs\n", inputs.size());
  std::fflush(stdout);
  // As libFuzzer does, leave without running exit handlers: a target may keep threads running (the
  // HTTP target's server still winding down its last connection), and OpenSSL's atexit cleanup
  // would free the locks under them.
  std::_Exit(inputs.empty() ? 1 : 0);
}
