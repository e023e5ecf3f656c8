# The first rule of sluice: src/core is pure. No Boost.Asio/Beast, no sockets, no clock reads.
#
# Enforced three ways, all at build time:
#  1. Every core translation unit is compiled with cmake/core_purity_guard.hpp force-included.
#     That header poisons the identifiers `asio`, `beast`, the std clocks and the POSIX time and
#     socket calls (#pragma GCC poison), so any include of Boost.Asio/Beast or any clock read in
#     src/core is a compile error, not a code-review comment.
#  2. sluice_check_core_purity() fails the configure step if the core target links anything
#     besides the standard library (no Boost::system, Boost::url, Threads, spdlog...).
#  3. A configure-time scan of src/core and include/sluice/core for forbidden #includes gives a
#     readable message naming the file before the compiler would.
set(SLUICE_CORE_GUARD "${CMAKE_CURRENT_LIST_DIR}/core_purity_guard.hpp")

function(sluice_check_core_purity target)
  get_target_property(libs ${target} LINK_LIBRARIES)
  if(libs)
    foreach(lib IN LISTS libs)
      message(FATAL_ERROR "core purity: ${target} must not link '${lib}' (src/core links only the standard library)")
    endforeach()
  endif()
  get_target_property(ilibs ${target} INTERFACE_LINK_LIBRARIES)
  if(ilibs)
    message(FATAL_ERROR "core purity: ${target} must not carry interface libraries '${ilibs}'")
  endif()
  file(GLOB_RECURSE core_files
       "${PROJECT_SOURCE_DIR}/src/core/*.cpp" "${PROJECT_SOURCE_DIR}/src/core/*.hpp"
       "${PROJECT_SOURCE_DIR}/include/sluice/core/*.hpp")
  foreach(f IN LISTS core_files)
    file(STRINGS "${f}" bad REGEX "^[ \t]*#[ \t]*include[ \t]*[<\"](boost/(asio|beast)|sys/socket|netinet/|arpa/|thread>|mutex>|ctime>|time\\.h|spdlog|prometheus)")
    if(bad)
      message(FATAL_ERROR "core purity: ${f} includes a forbidden header: ${bad}")
    endif()
  endforeach()
  target_compile_options(${target} PRIVATE "SHELL:-include ${SLUICE_CORE_GUARD}")
endfunction()
