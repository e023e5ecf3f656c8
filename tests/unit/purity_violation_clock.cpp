// Must NOT compile with cmake/core_purity_guard.hpp force-included.
#include <chrono>
int main() {
  return static_cast<int>(std::chrono::steady_clock::now().time_since_epoch().count());
}
