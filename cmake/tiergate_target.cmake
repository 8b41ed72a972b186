# Warnings are errors on our own code only; third-party headers come in as SYSTEM includes.
function(tiergate_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Werror -Wshadow -Wconversion -Wno-sign-conversion
    # GCC 12 reports -Wrestrict false positives on std::string concatenation at -O3 (GCC bug 105329).
    $<$<CXX_COMPILER_ID:GNU>:-Wno-restrict>>)
endfunction()
