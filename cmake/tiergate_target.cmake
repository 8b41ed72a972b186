# Warnings are errors on our own code only; third-party headers come in as SYSTEM includes.
function(tiergate_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Werror -Wshadow -Wconversion -Wno-sign-conversion>)
endfunction()
