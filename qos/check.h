// Broken invariants abort with file:line (DESIGN.md §7, tier 3): a bug must not limp on.
// qos/ depends on no other folder, so it carries its own copy of this four-line macro.
#pragma once

#include <cstdio>
#include <cstdlib>

#define QOS_CHECK(cond)                                                                   \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "%s:%d: QOS_CHECK failed: %s\n", __FILE__, __LINE__, #cond);  \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)
