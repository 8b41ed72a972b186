#include "kernels/cpu/cpu_isa.h"

#include <cstdlib>
#include <fstream>
#include <stdexcept>

#if defined(__x86_64__)
#include <cpuid.h>
#endif
#if defined(__aarch64__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace tiergate::kernels::cpu {
namespace {

struct Choice {
  CpuIsa isa;
  bool forced;
};

Choice choose() {
  if (const char* env = std::getenv("TIERGATE_CPU_ISA"); env != nullptr && *env != '\0') {
    const CpuIsa isa = parse_isa(env);
    if (!cpu_supports(isa)) {
      throw std::runtime_error(std::string("TIERGATE_CPU_ISA=") + env + ": this CPU (" + cpu_model_name() +
                               ") lacks that instruction set; unset it or choose a lower level");
    }
    return {isa, true};
  }
  CpuIsa best = CpuIsa::kScalar;
  for (CpuIsa isa : compiled_isas()) {
    if (cpu_supports(isa)) best = isa;
  }
  return {best, false};
}

#if defined(__x86_64__)
// F16C from CPUID leaf 1 (ECX bit 29): clang's __builtin_cpu_supports has no "f16c" feature name
// (GCC's does), and the sanitizer and fuzz builds use clang.
bool cpu_has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
}
#endif

const Choice& choice() {
  static const Choice c = choose();
  return c;
}

}  // namespace

const char* isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar: return "scalar";
    case CpuIsa::kAvx2: return "avx2";
    case CpuIsa::kAvx512: return "avx512";
    case CpuIsa::kNeon: return "neon";
    case CpuIsa::kNeonDot: return "neon-dotprod";
  }
  return "?";
}

std::vector<CpuIsa> compiled_isas() {
#if defined(__x86_64__)
  return {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512};
#elif defined(__aarch64__)
  return {CpuIsa::kScalar, CpuIsa::kNeon, CpuIsa::kNeonDot};
#else
  return {CpuIsa::kScalar};
#endif
}

bool cpu_supports(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar: return true;
#if defined(__x86_64__)
    // libgcc's checks include the OS's XSAVE state for the wider registers.
    case CpuIsa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    case CpuIsa::kAvx512:
      return cpu_supports(CpuIsa::kAvx2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512vnni");
#elif defined(__aarch64__)
    case CpuIsa::kNeon: return true;  // Advanced SIMD is part of every AArch64 CPU
    case CpuIsa::kNeonDot: return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#endif
    default: return false;
  }
}

CpuIsa parse_isa(const std::string& name) {
  for (CpuIsa isa : compiled_isas()) {
    if (name == isa_name(isa)) return isa;
  }
  std::string accepted;
  for (CpuIsa isa : compiled_isas()) accepted += std::string(accepted.empty() ? "" : "|") + isa_name(isa);
  throw std::runtime_error("TIERGATE_CPU_ISA=" + name + " is not a level of this build; use " + accepted);
}

CpuIsa active_isa() { return choice().isa; }

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0 || line.rfind("Model", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  }
  return "unknown CPU";
}

std::string describe_cpu() {
  std::string s = cpu_model_name() + "; kernels " + isa_name(active_isa()) +
                  (choice().forced ? " (forced by TIERGATE_CPU_ISA)" : " (best supported)") + "; CPU supports";
  for (CpuIsa isa : compiled_isas()) {
    if (cpu_supports(isa)) s += std::string(" ") + isa_name(isa);
  }
  return s;
}

}  // namespace tiergate::kernels::cpu
