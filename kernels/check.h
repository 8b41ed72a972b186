// Broken invariants abort with file:line (DESIGN.md §7, tier 3): a bug must not limp on.
// Shared by kernels/ and engine/ (engine depends on kernels).
#pragma once

#include <cstdio>
#include <cstdlib>

#define TG_CHECK(cond)                                                                   \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: TG_CHECK failed: %s\n", __FILE__, __LINE__, #cond);  \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)
