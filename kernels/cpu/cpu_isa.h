// The CPU instruction-set level the kernels run at, chosen once per process at first use: the best
// level both this binary and the CPU support, or the one TIERGATE_CPU_ISA forces
// (scalar|avx2|avx512 on x86-64, scalar|neon|neon-dotprod on AArch64). Every level computes the
// same arithmetic (see isa_kernels.h), so the choice changes speed, never results.
// Any thread. A forced level the CPU lacks, or an unknown name, throws at first use (start-up).
#pragma once

#include <string>
#include <vector>

namespace tiergate::kernels::cpu {

enum class CpuIsa { kScalar, kAvx2, kAvx512, kNeon, kNeonDot };

const char* isa_name(CpuIsa isa);
// Levels compiled into this binary for this architecture, scalar first, best last.
std::vector<CpuIsa> compiled_isas();
// Whether the running CPU (and OS) can execute the level.
bool cpu_supports(CpuIsa isa);
// The level in force: TIERGATE_CPU_ISA if set (std::runtime_error if the CPU lacks it or the name
// is unknown), else the best supported one. Decided once; later calls return the same.
CpuIsa active_isa();
// Parses a TIERGATE_CPU_ISA value (std::runtime_error naming the accepted values otherwise).
CpuIsa parse_isa(const std::string& name);
// "Intel(R) Xeon(R) Processor; ISA avx512 (forced by TIERGATE_CPU_ISA); CPU has avx2 fma f16c ..."
std::string describe_cpu();
std::string cpu_model_name();

}  // namespace tiergate::kernels::cpu
