// Force-included into every translation unit of sluice_core (see cmake/CorePurity.cmake).
//
// The scheduling core never reads a clock and never touches I/O: `now` is always a parameter.
// Standard headers that legitimately mention the poisoned names are included first (their
// include guards keep them from being parsed again), then the names are poisoned so any later
// use, including pulling in Boost.Asio/Beast, fails to compile.
#pragma once
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <vector>
#pragma GCC poison asio beast
#pragma GCC poison steady_clock system_clock high_resolution_clock
#pragma GCC poison clock_gettime gettimeofday
#pragma GCC poison socket connect accept
